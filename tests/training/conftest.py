"""Every training test runs on one torch thread (the ``one_thread`` fixture of tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _training_on_one_thread(one_thread):
    yield

"""Shared pytest fixtures and options."""

from __future__ import annotations

import os

# Before torch loads OpenMP: on a busy 2-core machine, spinning OpenMP threads make recurrent
# layers (one barrier per time step) many times slower; passive waiting costs nothing when idle.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _asteroid_dir() -> Path:
    env = os.environ.get("DFKD_ASTEROID_FIXTURES")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "reference" / "asteroid-0.7.0"


@pytest.fixture(scope="session")
def asteroid_dir() -> Path:
    """Folder of the asteroid 0.7.0 reference fixtures (``../shared/reference/asteroid-0.7.0``)."""
    path = _asteroid_dir()
    if not (path / "manifest.json").is_file():
        pytest.skip(f"asteroid reference fixtures not found at {path} (set DFKD_ASTEROID_FIXTURES)")
    return path


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DFKD_SKIP_SLOW") == "1":
        skip = pytest.mark.skip(reason="slow test skipped because DFKD_SKIP_SLOW=1")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Two cores: keep tests from oversubscribing, and results reproducible.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture
def one_thread():
    """One torch thread for the test (after ``_deterministic_threads``): tiny models and recurrent
    layers gain nothing from a second thread, and on a shared, loaded 2-core machine libgomp's
    spinning barriers make 2 threads many times slower (tests/models/test_dccrn.py: 147 s with 2
    threads at load 8, 14 s with 1). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``; ``tests/training`` uses it throughout."""
    torch.set_num_threads(1)
    yield

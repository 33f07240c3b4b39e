"""Fixtures shared by the deployment tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.models import build


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A seeded `mini` Conv-TasNet saved as a dfkd checkpoint."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "mini.pt"
    save_checkpoint(path, model_payload(build("convtasnet", "mini")))
    return path

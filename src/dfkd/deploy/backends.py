"""What runs the model for ``dfkd enhance``: a PyTorch checkpoint or an exported ONNX file.

A backend enhances a ``(batch, samples)`` float32 array at its ``sample_rate``; its ``grid`` (the
model's frame period in samples, :func:`dfkd.models.frame_grid`) lets :mod:`dfkd.deploy.streaming`
start chunks where the model's frames start.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .. import SAMPLE_RATE
from ..errors import DfkdError
from ..models import frame_grid
from ..models.inference import enhance_batch


class Backend(Protocol):
    """Anything that enhances a ``(batch, samples)`` float32 array at ``sample_rate``.

    An optional ``grid`` attribute (samples at ``sample_rate``, see :func:`dfkd.models.frame_grid`) aligns
    chunk starts with the model's framing.
    """

    sample_rate: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """A PyTorch model (eval mode, no autograd) on ``device``."""

    def __init__(self, model, device: str = "cpu") -> None:
        self.device = _torch_device(device)
        self.model = model.eval().to(self.device)
        self.sample_rate = int(getattr(model, "sample_rate", SAMPLE_RATE))
        self.grid = frame_grid(str(getattr(model, "ARCH", "")), getattr(model, "config", {}))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return enhance_batch(self.model, batch, self.device)


class OnnxBackend:
    """An exported ``.onnx`` model run by onnxruntime (no model code needed)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> None:
        from .export import onnx_metadata, onnx_session

        self.session = onnx_session(path, threads=threads, device=device)
        meta = onnx_metadata(self.session)
        self.sample_rate = int(meta.get("sample_rate", SAMPLE_RATE))
        self.grid = frame_grid(meta.get("arch", ""), json.loads(meta.get("config", "{}")))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        from .export import onnx_forward

        return onnx_forward(self.session, batch)


def _torch_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DfkdError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise DfkdError(f"--device {device}: not a device name ({err})") from err


def load_backend(path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> Backend:
    """A backend for a dfkd/asteroid checkpoint, a run folder, or an ``.onnx`` file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise DfkdError(f"{path}: ONNX model not found")
        return OnnxBackend(path, device=device, threads=threads)
    import torch

    from ..checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    return TorchBackend(load_model(path), device=device)

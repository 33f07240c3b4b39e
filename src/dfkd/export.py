"""ONNX export and onnxruntime inference.

Models are built from export-friendly layers (see :mod:`dfkd.models.layers`), so the TorchScript
based exporter traces them with a dynamic length axis.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import atomic_write

OPSET = 17


def export_onnx(model: nn.Module, path: str | os.PathLike, example_seconds: float = 1.0) -> Path:
    """Export ``model`` (``(batch, samples) -> (batch, samples)``) with dynamic batch and length."""
    model = model.eval()
    example = torch.randn(1, int(16000 * example_seconds)) * 0.1

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes
            torch.onnx.export(
                model,
                (example,),
                tmp,
                dynamo=False,
                input_names=["noisy"],
                output_names=["enhanced"],
                dynamic_axes={"noisy": {0: "batch", 1: "samples"}, "enhanced": {0: "batch", 1: "samples"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )

    atomic_write(path, write)
    return Path(path)


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for an exported model."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_forward(session, noisy: np.ndarray) -> np.ndarray:
    """Run an exported model on a ``(batch, samples)`` float32 array."""
    return session.run(None, {"noisy": np.ascontiguousarray(noisy, dtype=np.float32)})[0]

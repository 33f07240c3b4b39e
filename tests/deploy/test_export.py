"""`dfkd export` and dfkd.deploy.export: parity-checked export, int8 quantisation, failure clean-up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.cli import main
from dfkd.errors import DfkdError
from dfkd.deploy.export import (export_checked, export_onnx, onnx_forward, onnx_metadata, onnx_session,
                         quantize_int8)
from dfkd.models import build


def test_export_cli_with_int8_report(tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "mini.pt"
    save_checkpoint(ckpt, model_payload(build("convtasnet", "mini")))
    out, report = tmp_path / "model.onnx", tmp_path / "report.json"
    assert main(["export", str(ckpt), "--onnx", str(out), "--int8", "--int8-ops", "all",
                 "--clips", "2", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    errors = data["parity_max_abs_error"]
    assert len(errors) == 2 and all(e <= 1e-4 for e in errors.values())
    int8 = data["int8"]
    assert Path(int8["onnx"]) == tmp_path / "model.int8.onnx" and Path(int8["onnx"]).is_file()
    assert int8["quantized_ops"].get("ConvInteger", 0) > 0
    assert int8["float_ops"] == {"ConvTranspose": 1}  # decoder stays float32
    quality = int8["quality"]
    assert quality["clips"] == 2 and set(quality["delta"]) == {"pesq_wb", "si_snr"}
    assert quality["agreement_si_snr"] > 15  # int8 follows fp32 closely
    meta = onnx_metadata(onnx_session(out))
    assert meta["arch"] == "convtasnet" and meta["sample_rate"] == "16000"
    assert json.loads(meta["config"]) == build("convtasnet", "mini").config


def test_int8_quantises_lstm_and_matmul(tmp_path):
    torch.manual_seed(0)
    model = build("dptnet", "mini").eval()
    fp32, int8 = tmp_path / "d.onnx", tmp_path / "d.int8.onnx"
    export_onnx(model, fp32)
    report = quantize_int8(fp32, int8)
    assert report["quantized_ops"].get("DynamicQuantizeLSTM", 0) > 0
    assert report["quantized_ops"].get("MatMulInteger", 0) > 0
    # by default convolutions stay float: onnxruntime's ConvInteger is several times slower
    assert "ConvInteger" not in report["quantized_ops"] and report["float_ops"]["Conv"] > 0
    noisy = (np.random.default_rng(0).standard_normal((1, 12345)) * 0.1).astype(np.float32)
    reference = onnx_forward(onnx_session(fp32), noisy)
    quantised = onnx_forward(onnx_session(int8), noisy)
    assert quantised.shape == reference.shape
    relative = np.sqrt(np.mean((quantised - reference) ** 2) / np.mean(reference**2))
    assert relative < 0.2


class _Drifting(nn.Module):
    """Export traces one call; every later PyTorch call adds more, so parity must fail."""

    ARCH = "drifting"
    sample_rate = 16000

    def __init__(self) -> None:
        super().__init__()
        self.config: dict = {}
        self.calls = 0

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return noisy + 0.01 * self.calls


def test_parity_failure_leaves_no_file(tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(DfkdError, match="differs from PyTorch"):
        export_checked(_Drifting(), out)
    assert list(tmp_path.iterdir()) == []


def test_export_cli_errors(tmp_path):
    assert main(["export", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    torch.manual_seed(0)
    ckpt = tmp_path / "mini.pt"
    save_checkpoint(ckpt, model_payload(build("convtasnet", "mini")))
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "m.txt")]) == 1
    assert not (tmp_path / "m.txt").exists()

"""dfkd.deploy.quantize and `dfkd export --int8`: static QDQ int8, calibration input, per-arch scheme."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from dfkd.cli import main
from dfkd.deploy.export import export_onnx, onnx_forward, onnx_session, op_counts
from dfkd.deploy.quantize import (ClipReader, calibration_clips, default_scheme, quantize_for,
                                  segments)
from dfkd.errors import DfkdError
from dfkd.evaluation.metrics import si_snr
from dfkd.models import build

# int8 output against fp32 output of the same file (SI-SNR): the untrained mini Conv-TasNet
# measured 25-37 dB (the trained small one 35-37 dB); 20 dB is an error 10x below the signal
AGREEMENT_BOUND_DB = 20.0


def _clips_folder(folder, count: int = 2, seconds: float = 1.5):
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(count):
        t = np.arange(int(16000 * seconds)) / 16000
        clip = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"clip{i}.wav", clip.astype(np.float32), 16000)
    return folder


def test_static_export_quantises_convolutions_and_follows_fp32(checkpoint, tmp_path):
    calib = _clips_folder(tmp_path / "calib")
    out, report = tmp_path / "m.onnx", tmp_path / "r.json"
    assert main(["export", str(checkpoint), "--onnx", str(out), "--int8", "--calibrate", str(calib),
                 "--clips", "2", "--json", str(report)]) == 0
    int8 = json.loads(report.read_text())["int8"]
    assert int8["scheme"] == "static"  # Conv-TasNet's default
    assert int8["calibrated_on"] == f"2 clips of {calib}"
    # the file holds QDQ pairs; the session ONNX Runtime builds runs fused QLinearConv
    counts = op_counts(int8["onnx"])
    assert counts.get("DequantizeLinear", 0) > 0 and counts.get("QuantizeLinear", 0) > 0
    convs = op_counts(out)["Conv"]
    assert int8["quantized_ops"]["QLinearConv"] == convs - 1  # all but the waveform encoder
    assert int8["float_ops"].get("Conv") == 1 and int8["float32_nodes"] == ["/encoder/conv/Conv"]
    # no size check: on a 50 kB mini model the per-channel scales and QDQ nodes outweigh the
    # 4x smaller weights (the `small` preset's file is 0.47x the fp32 size)
    assert int8["quality"]["agreement_si_snr"] > AGREEMENT_BOUND_DB
    noisy = (np.random.default_rng(0).standard_normal((1, 20000)) * 0.1).astype(np.float32)
    reference = onnx_forward(onnx_session(out), noisy)[0]
    quantised = onnx_forward(onnx_session(int8["onnx"]), noisy)[0]
    assert si_snr(quantised, reference, 16000) > AGREEMENT_BOUND_DB


def test_static_without_calibration_folder_uses_synthetic_clips(checkpoint, tmp_path):
    report = tmp_path / "r.json"
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--int8",
                 "--calibrate-clips", "2", "--clips", "1", "--json", str(report)]) == 0
    int8 = json.loads(report.read_text())["int8"]
    assert int8["scheme"] == "static" and "synthetic" in int8["calibrated_on"]
    assert int8["quality"]["agreement_si_snr"] > AGREEMENT_BOUND_DB


def test_dynamic_scheme_and_int8_ops_keep_the_old_behaviour(checkpoint, tmp_path):
    report = tmp_path / "r.json"
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--int8",
                 "--int8-scheme", "dynamic", "--clips", "1", "--json", str(report)]) == 0
    int8 = json.loads(report.read_text())["int8"]
    assert int8["scheme"] == "dynamic" and int8["quantized_ops"] == {}  # no MatMul/LSTM here


def test_default_scheme_per_architecture():
    assert [default_scheme(a) for a in ("convtasnet", "dccrn", "dptnet", "unknown")] == [
        "static", "static", "dynamic", "dynamic"]


@pytest.mark.parametrize("arch", ["dptnet", "dccrn"])
def test_dynamic_quantises_the_lstm(arch, tmp_path):
    torch.manual_seed(0)
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    export_onnx(build(arch, "mini"), fp32)
    report = quantize_for(arch, fp32, int8, scheme="dynamic")
    assert report["scheme"] == "dynamic"
    assert report["quantized_ops"].get("DynamicQuantizeLSTM", 0) > 0


def test_static_quantises_dccrn_convolutions_and_its_lstm(tmp_path):
    torch.manual_seed(0)
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    export_onnx(build("dccrn", "mini"), fp32)
    clips = [(np.random.default_rng(i).standard_normal(16000) * 0.1).astype(np.float32)
             for i in range(2)]
    report = quantize_for("dccrn", fp32, int8, scheme="static", clips=clips)
    assert report["quantized_ops"].get("QLinearConv", 0) > 0
    assert report["quantized_ops"].get("DynamicQuantizeLSTM", 0) > 0
    assert report["calibration_segments"] == 2
    # the STFT and the encoder (which read the spectrogram) stay float32, the decoder is int8
    kept = report["float32_nodes"]
    assert kept[0] == "/stft/Conv" and all(n.startswith("/encoders.") for n in kept[1:])
    assert len(kept) == 1 + 2 * len(build("dccrn", "mini").encoders)
    assert report["float_ops"]["Conv"] == len(kept)


def test_calibration_segments_have_one_shape():
    clips = [np.ones(1000, np.float32), np.arange(100000, dtype=np.float32)]
    cut = segments(clips, seconds=0.5)
    assert [s.shape for s in cut] == [(1, 8000), (1, 8000)]
    assert cut[1][0, 0] == (100000 - 8000) // 2  # the middle of a long clip
    reader = ClipReader(clips, seconds=0.5)
    assert reader.get_next()["noisy"].shape == (1, 8000)
    assert reader.get_next() is not None and reader.get_next() is None


def test_empty_calibration_folder_is_one_line_error_and_writes_nothing(checkpoint, tmp_path,
                                                                      capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    out_dir = tmp_path / "out"
    assert main(["export", str(checkpoint), "--onnx", str(out_dir / "m.onnx"), "--int8",
                 "--calibrate", str(empty)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(empty) in err and "no audio files" in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_unreadable_calibration_file_is_named_and_nothing_written(checkpoint, tmp_path, capsys):
    calib = _clips_folder(tmp_path / "calib", count=1)
    bad = calib / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["export", str(checkpoint), "--onnx", str(out_dir / "m.onnx"), "--int8",
                 "--calibrate", str(calib)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert list(out_dir.iterdir()) == []
    with pytest.raises(DfkdError, match="not a folder"):
        calibration_clips(tmp_path / "missing")


def test_calibration_options_need_int8(checkpoint, tmp_path):
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "m.onnx"),
                 "--calibrate", str(tmp_path)]) == 1
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "m.onnx"), "--int8",
                 "--int8-scheme", "static", "--int8-ops", "all"]) == 1
    assert list(tmp_path.iterdir()) == []


def test_failed_static_quantisation_leaves_no_file(tmp_path, monkeypatch):
    import onnxruntime.quantization as quantization

    torch.manual_seed(0)
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    export_onnx(build("convtasnet", "mini"), fp32)
    with pytest.raises(DfkdError, match="calibration"):
        quantize_for("convtasnet", fp32, int8, clips=[])

    def half_written(model_input, model_output, *args, **kwargs):
        with open(model_output, "wb") as handle:
            handle.write(b"partial")
        raise RuntimeError("calibration interrupted")

    monkeypatch.setattr(quantization, "quantize_static", half_written)
    with pytest.raises(RuntimeError, match="interrupted"):
        quantize_for("convtasnet", fp32, int8, clips=[np.zeros(16000, np.float32)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no partial or temp file

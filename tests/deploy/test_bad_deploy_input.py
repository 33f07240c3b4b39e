"""Bad input to `dfkd enhance` (issue 14): non-finite, empty and truncated files, odd folder
entries, existing outputs; and what good input keeps (24-bit subtype, file mode)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.cli import main
from dfkd.models import build


def _clip(frames: int = 8000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(frames) * 0.1).astype(np.float32)


def _enhance(checkpoint, src, out, *extra) -> int:
    return main(["enhance", str(checkpoint), str(src), "--out", str(out), "--quiet", *extra])


def _error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_non_finite_samples_are_refused_and_nothing_written(checkpoint, tmp_path, capsys, ext):
    audio = _clip()
    audio[100], audio[200] = np.nan, np.inf
    src = tmp_path / "nan.wav"
    sf.write(src, audio, 16000, subtype="FLOAT")
    out = tmp_path / f"out{ext}"
    assert _enhance(checkpoint, src, out) == 1
    lines = _error_lines(capsys)
    assert any("nan.wav" in line and "2 NaN or Inf sample(s)" in line for line in lines)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
    # folder mode: the file is listed as failed, the good one written, the status says so
    folder = tmp_path / "in"
    folder.mkdir()
    os.replace(src, folder / "nan.wav")
    sf.write(folder / "good.wav", _clip(), 16000)
    assert _enhance(checkpoint, folder, tmp_path / "outdir") == 1
    err = "\n".join(_error_lines(capsys))
    assert "1 written" in err and "1 failed" in err and "nan.wav" in err
    assert sorted(p.name for p in (tmp_path / "outdir").iterdir()) == ["good.wav"]


def test_empty_and_truncated_files_are_errors(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    whole = tmp_path / "whole.wav"
    sf.write(whole, _clip(16000), 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[:12000])
    for src, problem in ((empty, "empty (0 samples)"),
                         (cut, "truncated audio file (the header declares 16000 frames")):
        out = tmp_path / f"out_{src.name}"
        assert _enhance(checkpoint, src, out) == 1
        lines = _error_lines(capsys)
        assert any(src.name in line and problem in line for line in lines), lines
        assert not out.exists()


def test_folder_mode_lists_every_entry_it_does_not_process(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "good.wav", _clip(), 16000)
    (src / "loop.wav").symlink_to(src / "loop.wav")
    (src / "dangling.wav").symlink_to(tmp_path / "gone.wav")
    (src / "folder.wav").mkdir()
    assert _enhance(checkpoint, src, tmp_path / "out") == 1
    err = "\n".join(_error_lines(capsys))
    assert "1 written" in err and "3 failed" in err
    assert "loop.wav: symbolic link loop" in err
    assert "dangling.wav: dangling symbolic link" in err
    assert "folder.wav: a folder, not an audio file" in err
    # a symlink loop given as the input itself is named as such, not "no such file"
    assert _enhance(checkpoint, src / "loop.wav", tmp_path / "x.wav") == 1
    assert "loop.wav: symbolic link loop" in capsys.readouterr().err


def test_existing_output_is_refused_unless_overwrite(checkpoint, tmp_path, capsys):
    src = tmp_path / "clip.wav"
    sf.write(src, _clip(), 16000)
    dst = tmp_path / "out.wav"
    dst.write_bytes(b"from another model")
    assert _enhance(checkpoint, src, dst) == 1
    err = capsys.readouterr().err
    assert f"{dst}: output exists, not replaced (pass --overwrite" in err
    assert dst.read_bytes() == b"from another model"
    assert _enhance(checkpoint, src, dst, "--overwrite") == 0


def test_24_bit_input_stays_24_bit_in_flac_and_outputs_get_umask_mode(checkpoint, tmp_path):
    src = tmp_path / "deep.wav"
    sf.write(src, _clip(), 16000, subtype="PCM_24")
    old = os.umask(0o022)
    try:
        assert _enhance(checkpoint, src, tmp_path / "deep.flac") == 0
        assert _enhance(checkpoint, src, tmp_path / "deep.ogg") == 0
    finally:
        os.umask(old)
    assert sf.info(tmp_path / "deep.flac").subtype == "PCM_24"
    assert (tmp_path / "deep.flac").stat().st_mode & 0o777 == 0o644
    assert sf.info(tmp_path / "deep.ogg").format == "OGG"


def test_export_checks_data_before_writing_and_bench_takes_the_onnx_enhance_takes(
        checkpoint, tmp_path, capsys):
    onnx = tmp_path / "m.onnx"
    missing = tmp_path / "no_corpus"
    assert main(["export", str(checkpoint), "--onnx", str(onnx), "--int8", "--data",
                 str(missing)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and "not found" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither ONNX file written
    assert main(["export", str(checkpoint), "--onnx", str(onnx)]) == 0
    capsys.readouterr()
    assert main(["bench", str(onnx), "--engines", "pytorch,onnx-fp32", "--threads", "1",
                 "--rounds", "1", "--seconds", "0.5", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "m.onnx" in captured.out and "onnx-fp32" in captured.out
    assert "ONNX Runtime only" in captured.err and "Traceback" not in captured.err


def test_a_model_that_outputs_nan_writes_nothing(tmp_path, capsys):
    torch.manual_seed(0)
    model = build("convtasnet", "mini")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    ckpt = tmp_path / "nan.pt"
    save_checkpoint(ckpt, model_payload(model))
    src = tmp_path / "clip.wav"
    sf.write(src, _clip(), 16000)
    assert _enhance(ckpt, src, tmp_path / "out.flac") == 1
    err = "\n".join(_error_lines(capsys))
    assert "clip.wav: the model's output holds NaN or Inf" in err
    assert not (tmp_path / "out.flac").exists() and not list(tmp_path.glob(".*.tmp"))

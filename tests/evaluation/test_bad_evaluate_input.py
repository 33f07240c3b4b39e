"""Bad input to `dfkd evaluate` and `dfkd corpus check` (issue 14): formats, lonely files, a
flat corpus' test split, checkpoints whose header and weights disagree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.cli import main
from dfkd.models import build


def _clip(seed: int, frames: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / 16000
    return (0.1 * np.sin(2 * np.pi * 180 * t) + 0.01 * rng.standard_normal(frames)).astype(np.float32)


def _flat(root: Path, names) -> Path:
    for i, name in enumerate(names):
        for kind in ("clean", "noisy"):
            (root / kind).mkdir(parents=True, exist_ok=True)
            sf.write(root / kind / f"{name}.wav", _clip(i) * (1.0 if kind == "clean" else 1.2), 16000)
    return root


def test_ogg_is_accepted_and_lonely_files_are_reported_on_both_sides(tmp_path, capsys):
    clean, enhanced = tmp_path / "clean", tmp_path / "enhanced"
    clean.mkdir(), enhanced.mkdir()
    for name in ("a", "b"):
        sf.write(clean / f"{name}.wav", _clip(1), 16000)
        sf.write(enhanced / f"{name}.ogg", _clip(1), 16000)
    args = ["evaluate", "--enhanced", str(enhanced), "--clean", str(clean), "--out",
            str(tmp_path / "scores"), "--metrics", "si_snr", "--no-progress"]
    assert main(args) == 0
    sf.write(clean / "c.wav", _clip(2), 16000)  # clean without an enhanced partner
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{clean / 'c.wav'}: no enhanced partner" in err and "Traceback" not in err
    (clean / "c.wav").unlink()
    sf.write(enhanced / "d.flac", _clip(2), 16000)  # and the other way round
    assert main(args) == 1
    assert f"{enhanced / 'd.flac'}: no clean partner" in capsys.readouterr().err


def test_flat_corpus_test_split_is_held_out_and_said(tmp_path, capsys):
    from dfkd.data.layouts import corpus_pairs

    root = _flat(tmp_path / "flat", [f"u{i}" for i in range(10)])
    names = {s: {p.name for p in corpus_pairs(root, s)} for s in ("train", "valid", "test")}
    assert names["test"] and names["test"].isdisjoint(names["train"] | names["valid"])
    assert names["train"].isdisjoint(names["valid"])
    assert len(names["train"]) + len(names["valid"]) + len(names["test"]) == 10
    assert main(["corpus", "check", str(root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"test: {len(names['test'])} pairs, 0 problem(s) (held out by name hash" in out


def test_checkpoint_whose_header_and_weights_disagree(tmp_path, capsys):
    torch.manual_seed(0)
    bad = model_payload(build("convtasnet", "mini"))
    bad["state_dict"] = model_payload(build("dccrn", "mini"))["state_dict"]
    ckpt = tmp_path / "mislabelled.pt"
    save_checkpoint(ckpt, bad)
    corpus = _flat(tmp_path / "flat", ["a", "b", "c"])
    sf.write(tmp_path / "in.wav", _clip(0), 16000)
    commands = [
        ["enhance", str(ckpt), str(tmp_path / "in.wav"), "--out", str(tmp_path / "o.wav")],
        ["export", str(ckpt), "--onnx", str(tmp_path / "o.onnx")],
        ["evaluate", "--model", str(ckpt), "--data", str(corpus), "--out", str(tmp_path / "ev")],
        ["bench", str(ckpt), "--engines", "onnx-fp32", "--quiet"],
        ["distill", "--teacher", str(ckpt), "--method", "spectral", "--data", str(corpus),
         "--out", str(tmp_path / "student"), "--preset", "mini", "--no-progress"],
    ]
    for argv in commands:
        assert main(argv) == 1, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(ckpt) in lines[0], (argv, lines)
        assert "the weights do not fit a convtasnet" in lines[0] and "missing" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat", "in.wav", "mislabelled.pt"]

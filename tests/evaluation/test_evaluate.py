"""`dfkd evaluate` end to end (folder and model modes), crash isolation, and user errors."""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dfkd.evaluation import evaluate, metrics, scoring
from dfkd.audio import load_mono
from dfkd.cli import main
from dfkd.data.layouts import Pair

SR = 16000
FAST = ["pesq_wb", "stoi", "si_snr", "si_snri", "snr", "csig"]


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Formant-shaped, syllable-gated harmonics with a noise floor (see test_metrics.py)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formants = np.array([[600, 1200, 2500], [350, 2000, 2800]]) * rng.uniform(0.9, 1.1)
    vowel = (t * 4).astype(int) % 2
    out = np.zeros_like(t)
    for h in range(1, 60):
        gain = sum(np.exp(-0.5 * ((h * f0 - formants[vowel, k]) / 120.0) ** 2) for k in range(3))
        out += (gain + 0.02) * np.sin(h * phase) * (h * f0 < 7800) / np.sqrt(h)
    out *= np.clip(np.sin(2 * np.pi * 2.0 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    out += 0.003 * np.sqrt(np.mean(out**2)) * rng.standard_normal(len(t))
    return (0.1 * out / np.sqrt(np.mean(out**2))).astype(np.float32)


def write(path: Path, audio: np.ndarray, subtype: str = "FLOAT") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SR, subtype=subtype)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """clean/, noisy/ (5 dB white-ish noise) and enhanced/ (noise down 10 dB); `zz` is all zeros."""
    root = tmp_path_factory.mktemp("folders")
    rng = np.random.default_rng(0)
    for i in range(3):
        clean = speech_like(2.0, i)
        noise = rng.standard_normal(len(clean)).astype(np.float32) * 0.056
        write(root / "clean" / f"u{i}.wav", clean)
        write(root / "noisy" / f"u{i}.wav", clean + noise)
        write(root / "enhanced" / f"u{i}.wav", clean + 0.3 * noise)
    write(root / "clean" / "zz.wav", speech_like(2.0, 9))
    write(root / "noisy" / "zz.wav", speech_like(2.0, 9) + 0.05)
    write(root / "enhanced" / "zz.wav", np.zeros(2 * SR, np.float32))  # PESQ raises on it
    return root


def _per_file(out: Path) -> dict[str, dict[str, float]]:
    with open(out / "per_file.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {row.pop("name"): {k: float(v) for k, v in row.items()} for row in rows}


def test_folder_mode_end_to_end(folders, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["evaluate", "--enhanced", str(folders / "enhanced"),
               "--clean", str(folders / "clean"),
               "--noisy", str(folders / "noisy"), "--out", str(out), "--workers", "2",
               "--metrics", ",".join(FAST)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "zz" in captured.err  # the skipped clip is reported as it happens

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= {"label", "clips", "metrics", "noisy", "failed"}
    assert summary["clips"] == 3
    assert list(summary["metrics"]) == FAST
    assert set(summary["metrics"]["pesq_wb"]) == {"mean", "std"}
    assert "si_snri" not in summary["noisy"] and "pesq_wb" in summary["noisy"]
    assert [f["name"] for f in summary["failed"]] == ["zz"]
    assert "all zeros" in summary["failed"][0]["error"]

    rows = _per_file(out)
    assert list(rows) == ["u0", "u1", "u2"]
    for name, row in rows.items():
        enhanced = load_mono(folders / "enhanced" / f"{name}.wav")
        clean = load_mono(folders / "clean" / f"{name}.wav")
        noisy = load_mono(folders / "noisy" / f"{name}.wav")
        # equal to the last bits (STOI's BLAS products vary in their last bit from call to call)
        direct = metrics.score_clip(enhanced, clean, noisy, metrics=FAST)
        assert {k: row[k] for k in FAST} == pytest.approx(direct, rel=1e-12)
        direct_noisy = metrics.score_clip(noisy, clean, metrics=FAST)
        noisy_row = {k[6:]: v for k, v in row.items() if k.startswith("noisy_")}
        assert noisy_row == pytest.approx(direct_noisy, rel=1e-12)
        assert list(noisy_row) == list(direct_noisy)
    for metric in FAST:
        values = [row[metric] for row in rows.values()]
        assert summary["metrics"][metric]["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert summary["metrics"][metric]["std"] == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    # enhancement removed noise: every metric improved over the noisy row
    for metric in FAST:
        if metric != "si_snri":
            assert summary["metrics"][metric]["mean"] > summary["noisy"][metric]["mean"], metric

    table = (out / "summary.md").read_text().splitlines()
    body = [line for line in table if line.startswith("| ")]
    assert body[0].startswith("| system | PESQ-WB")
    assert body[1].startswith("| noisy |") and body[2].startswith("| enhanced |")
    assert f"{summary['noisy']['pesq_wb']['mean']:.2f} ± " in body[1]
    assert any("`zz`" in line for line in table)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from dfkd import models
    from dfkd.checkpoint import model_payload, save_checkpoint

    torch.manual_seed(0)
    model = models.build("convtasnet", "mini")
    path = tmp_path_factory.mktemp("ckpt") / "mini.pt"
    save_checkpoint(path, model_payload(model))
    return path


def test_model_mode_end_to_end(checkpoint, tmp_path, capsys):
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    for i in range(2):
        clean = speech_like(2.0, 20 + i)
        write(data / "test" / "clean" / f"c{i}.wav", clean, "PCM_16")
        write(data / "test" / "noisy" / f"c{i}.wav",
              clean + 0.05 * rng.standard_normal(len(clean)).astype(np.float32), "PCM_16")
    out = tmp_path / "out"
    rc = main(["evaluate", "--model", str(checkpoint), "--data", str(data), "--out", str(out),
               "--workers", "2", "--save-enhanced", "--metrics", ",".join(FAST)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 2 and summary["failed"] == [] and summary["label"] == "mini"
    assert summary["noisy"] is not None

    from dfkd.checkpoint import load_model

    model = load_model(checkpoint)
    for name, row in _per_file(out).items():
        noisy = load_mono(data / "test" / "noisy" / f"{name}.wav")
        clean = load_mono(data / "test" / "clean" / f"{name}.wav")
        with torch.no_grad():
            expected = model(torch.from_numpy(noisy)[None])[0].numpy()
        saved = load_mono(out / "enhanced" / f"{name}.wav")
        np.testing.assert_allclose(saved, expected, atol=1e-6)
        direct = metrics.score_clip(saved, clean, noisy, metrics=FAST)
        for key in FAST:
            assert row[key] == pytest.approx(direct[key], abs=1e-4), key
    body = [line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| ")]
    assert body[1].startswith("| noisy |") and body[2].startswith("| mini |")


def test_evaluate_model_api_in_process_restores_train_mode(checkpoint, folders):
    from dfkd.checkpoint import load_model

    model = load_model(checkpoint).train()
    pairs = [Pair(f"u{i}", folders / "noisy" / f"u{i}.wav", folders / "clean" / f"u{i}.wav")
             for i in range(2)]
    summary = evaluate.evaluate_model(model, pairs, workers=0, metrics=["si_snr", "si_snri"],
                                      progress=False)
    assert model.training
    assert summary.names == ["u0", "u1"] and summary.metrics == ["si_snr", "si_snri"]
    gain = [s["si_snr"] - n["si_snr"] for s, n in zip(summary.scores, summary.noisy_scores)]
    assert [s["si_snri"] for s in summary.scores] == pytest.approx(gain)


def test_missing_partner_is_an_error_naming_the_file(folders, tmp_path, capsys):
    enhanced = tmp_path / "enhanced"
    enhanced.mkdir()
    for path in (folders / "enhanced").iterdir():
        (enhanced / path.name).write_bytes(path.read_bytes())
    write(enhanced / "extra.wav", np.zeros(SR, np.float32))
    rc = main(["evaluate", "--enhanced", str(enhanced), "--clean", str(folders / "clean"),
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1
    assert str(enhanced / "extra.wav") in err and "no clean partner" in err
    assert not (tmp_path / "out").exists()


def test_unreadable_file_is_an_error_naming_it(folders, tmp_path, capsys):
    clean = tmp_path / "clean"
    clean.mkdir()
    for path in (folders / "clean").iterdir():
        (clean / path.name).write_bytes(path.read_bytes())
    (clean / "u1.wav").write_bytes(b"this is not a wav file")
    rc = main(["evaluate", "--enhanced", str(folders / "enhanced"), "--clean", str(clean),
               "--out", str(tmp_path / "out"), "--workers", "1", "--metrics", "si_snr"])
    err = capsys.readouterr().err
    assert rc == 1
    assert str(clean / "u1.wav") in err and "not a readable audio file" in err


def test_both_or_neither_mode_is_an_error(capsys, tmp_path):
    assert main(["evaluate", "--out", str(tmp_path)]) == 1
    assert main(["evaluate", "--model", "x.pt", "--clean", "c", "--out", str(tmp_path)]) == 1
    assert "either --model" in capsys.readouterr().err


def _jobs(count: int) -> list[scoring.ClipJob]:
    rng = np.random.default_rng(3)
    jobs = []
    for i in range(count):
        clean = rng.standard_normal(SR).astype(np.float32)
        noise = 0.1 * rng.standard_normal(SR).astype(np.float32)
        jobs.append(scoring.ClipJob(i, f"clip{i}", clean + noise, clean))
    return jobs


def _fails_on(index: int, action):
    """A score_clip that runs ``action`` (abort, hang) on job ``index`` of ``_jobs``."""
    real, target = scoring.score_clip, _jobs(4)[index].clean

    def patched(enhanced, clean, noisy, sample_rate, metric_names):
        if np.array_equal(clean, target):
            action()
        return real(enhanced, clean, noisy, sample_rate, metric_names)

    return patched


NEEDS_FORK = pytest.mark.skipif("fork" not in mp.get_all_start_methods(),
                                reason="the patches reach the workers by fork")


@NEEDS_FORK
def test_a_worker_that_aborts_loses_only_its_clip(monkeypatch):
    # What PESQ's C code does on some inputs: abort() the whole process.
    monkeypatch.setattr(scoring, "score_clip", _fails_on(1, os.abort))
    results = sorted(scoring.score_clips(_jobs(4), ["si_snr"], workers=2), key=lambda r: r.index)
    assert [r.ok for r in results] == [True, False, True, True]
    assert "SIGABRT" in results[1].error
    expected = [metrics.si_snr(j.enhanced, j.clean) for j in _jobs(4)]
    expected[1] = None
    assert [r.scores.get("si_snr") for r in results] == expected


@NEEDS_FORK
def test_a_clip_that_hangs_is_stopped_after_the_timeout(monkeypatch):
    monkeypatch.setattr(scoring, "score_clip", _fails_on(2, lambda: time.sleep(60)))
    start = time.monotonic()
    results = sorted(scoring.score_clips(_jobs(4), ["si_snr"], workers=2, clip_timeout=3.0),
                     key=lambda r: r.index)
    assert time.monotonic() - start < 30
    assert [r.ok for r in results] == [True, True, False, True]
    assert "longer than 3 s" in results[2].error

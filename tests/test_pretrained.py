"""The committed demo teachers (design.md): small, seeded, documented, and really enhancing speech."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dfkd import models
from dfkd.checkpoint import load_model, read_checkpoint
from dfkd.data.demo.speech import ASTERISK_SOUNDS, decode_g722
from dfkd.evaluation.metrics import si_snr

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("convtasnet", "dptnet", "dccrn")


@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_file_is_small_seeded_and_has_its_records(arch):
    path = REPO / "pretrained" / f"{arch}_small.pt"
    assert path.stat().st_size <= 5 * 1024 * 1024, "design.md: each demo teacher <= 5 MB"
    data = read_checkpoint(path)
    assert data["train_seed"] == 0  # the demo's students use seeds 1 and 2
    assert "optimizer" not in data  # weights only
    model = load_model(path)
    assert model.ARCH == arch
    assert dict(model.config) == dict(models.build(arch, "small").config)

    records = REPO / "pretrained" / f"{arch}_small"
    commands = (records / "commands.sh").read_text()
    stages = sorted(records.glob("stage[0-9].yaml"))
    assert stages, "no training config recorded"
    for number, stage in enumerate(stages, start=1):
        config = yaml.safe_load(stage.read_text())
        assert config["model"] == {**config["model"], "arch": arch, "preset": "small"}
        assert config["seed"] == 0
        assert f"--config pretrained/{arch}_small/stage{number}.yaml" in commands
        history = json.loads((records / f"stage{number}_history.json").read_text())
        assert history["train"], "empty training log"
    # the committed file is the last stage's best checkpoint, as its history says
    assert data["step"] in [r["step"] for r in history["valid"] if r.get("best")]

    summary = json.loads((records / "test" / "summary.json").read_text())
    assert summary["clips"] >= 40 and not summary["failed"]  # the whole demo test split
    assert summary["metrics"]["si_snri"]["mean"] > 4.0


def _speech(path: Path) -> np.ndarray:
    audio = decode_g722(path).astype(np.float32)
    audio -= audio.mean()  # the codec's DC offset
    return audio / (np.abs(audio).max() + 1e-9) * 0.5


@pytest.mark.skipif(not (ASTERISK_SOUNDS / "fr").is_dir(),
                    reason="Debian's asterisk-core-sounds-fr-g722 is not installed (make system-packages)")
@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_enhances_the_unseen_test_speaker(arch):
    """June (fr) is never in the teachers' training data: a real, speaker-disjoint check."""
    files = sorted((ASTERISK_SOUNDS / "fr").rglob("*.g722"))[:40]
    clean = np.concatenate([_speech(f) for f in files])[: 16000 * 4]
    rng = np.random.default_rng(0)
    noise = np.cumsum(rng.standard_normal(clean.size)).astype(np.float32)  # brown noise
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # keep it audible, not DC
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2))  # 0 dB SNR
    noisy = clean + noise
    model = load_model(REPO / "pretrained" / f"{arch}_small.pt")
    with torch.no_grad():
        enhanced = model(torch.from_numpy(noisy)[None])[0].numpy()
    gain = si_snr(enhanced, clean) - si_snr(noisy, clean)
    assert gain > 4.0, f"{arch}: SI-SNR improvement only {gain:.2f} dB"


def _teacher_lead_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("teacher_lead", REPO / "pretrained" / "teacher_lead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_teacher_lead_is_paired_over_the_common_clips(tmp_path, capsys):
    script = _teacher_lead_script()
    teacher, student = tmp_path / "teacher.csv", tmp_path / "student.csv"
    teacher.write_text("name,si_snr,si_snri\na,9,5\nb,10,7\nc,11,9\nd,12,nan\n")
    student.write_text("name,si_snr,si_snri\na,8,3\nb,9,6\nc,10,6\ne,1,1\n")  # d, e: not in both
    assert script.main([str(teacher), str(student)]) == 0
    out = capsys.readouterr().out
    # diffs 2, 1, 3: mean 2, sample std 1, standard error 1/sqrt(3)
    assert "si_snri over 3 clips: teacher 7.00, student 5.00, lead +2.00 ± 0.58 (3/3 clips;" in out
    assert out.rstrip().endswith("the 2 dB target: met")
    assert script.main([str(teacher), str(student), "--target", "2.5"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("not met")


def test_teacher_lead_names_the_file_without_the_metric(tmp_path, capsys):
    script = _teacher_lead_script()
    teacher, student = tmp_path / "teacher.csv", tmp_path / "student.csv"
    teacher.write_text("name,si_snri\na,5\n")
    student.write_text("name,si_snr\na,3\n")
    assert script.main([str(teacher), str(student)]) == 2
    assert capsys.readouterr().err == (f"teacher_lead: {student}: no `name` and `si_snri` columns "
                                       "(a per_file.csv of dfkd evaluate?)\n")

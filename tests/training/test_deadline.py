"""What a time-limited machine needs of a training run: a wall-clock deadline that saves last.pt
and stops, a resume that finds the same teacher at another path, and no TensorBoard package."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from dfkd.checkpoint import read_checkpoint
from dfkd.cli import EXIT_STOPPED

from cli_runs import fast_flags, run_cli
from tiny_corpus import make_tiny_corpus

FAST = [*fast_flags(batch=2, segment=0.5, valid_segment=0.5), "--set", "log_every=1",
        "--valid-every", "4", "--checkpoint-every", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"), train=4, valid=2)


def _step(run: Path) -> int:
    return int(read_checkpoint(run / "last.pt")["step"])


def test_a_passed_deadline_saves_last_pt_at_once_and_resume_finishes(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--arch", "convtasnet", "--data", corpus, "--out", run, "--steps", 6, *FAST]
    # checkpoint_every is 4: without the deadline's own save the run would restart from step 0
    assert run_cli(*args, "--set", f"deadline={time.time() - 1:.0f}") == EXIT_STOPPED
    assert "stopped at the deadline, step 1; --resume continues it" in capsys.readouterr().err
    assert _step(run) == 1
    assert run_cli("train", "--out", run, "--resume", "--no-progress") == 0  # deadline may change
    assert _step(run) == 6 and (run / "best.pt").is_file()


def test_a_resumed_student_finds_its_teacher_at_another_path(corpus, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    assert run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", teacher, "--steps", 2,
                 *FAST) == 0
    student = tmp_path / "student"
    distill = ["distill", "--method", "output", "--data", corpus, "--out", student, "--steps", 4,
               "--seed", 1, *FAST]
    assert run_cli(*distill, "--teacher", teacher / "best.pt",
                 "--set", f"deadline={time.time() - 1:.0f}") == EXIT_STOPPED
    moved = tmp_path / "elsewhere" / "teacher.pt"  # another checkout, another machine
    moved.parent.mkdir()
    shutil.copyfile(teacher / "best.pt", moved)
    (teacher / "best.pt").unlink()
    capsys.readouterr()
    assert run_cli("train", "--out", student, "--resume", "--no-progress",
                 "--set", f"kd.teacher={moved}") == 0
    assert _step(student) == 4

    # another model at the same place is refused
    other = tmp_path / "other"
    assert run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", other, "--steps", 2,
                 "--seed", 5, *FAST) == 0
    again = tmp_path / "again"
    distill[distill.index(student)] = again
    assert run_cli(*distill, "--teacher", moved, "--set", f"deadline={time.time() - 1:.0f}") == EXIT_STOPPED
    capsys.readouterr()
    assert run_cli("train", "--out", again, "--resume", "--no-progress",
                 "--set", f"kd.teacher={other / 'best.pt'}") == 1
    assert "a resumed run keeps its teacher" in capsys.readouterr().err


def test_training_without_tensorboard_writes_the_history_alone(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    run = tmp_path / "run"
    assert run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", run, "--steps", 2,
                 *FAST) == 0
    assert (run / "history.json").is_file() and not (run / "tb").exists()

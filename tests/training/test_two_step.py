"""The two-step schedule (Kegler et al., ICASSP 2024): KD alone, then the task loss; resumable."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from dfkd import models
from dfkd.checkpoint import model_payload, read_checkpoint, save_checkpoint
from dfkd.errors import DfkdError
from dfkd.training.schedule import TwoStep, check_two_step, two_step_schedule

from cli_runs import (
    ONE_THREAD_ENV as ENV, dfkd_command, fast_flags, reference_beside_a_killed_run, run_cli,
)
from tiny_corpus import make_tiny_corpus

FAST = fast_flags()


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("two_step")
    corpus = make_tiny_corpus(root / "corpus", train=8)
    torch.manual_seed(11)
    save_checkpoint(root / "teacher.pt", model_payload(models.build("convtasnet", "mini"),
                                                       train_seed=11))
    return corpus, root / "teacher.pt"


def test_schedule_phases_and_the_saved_switch_step():
    two = two_step_schedule(0.25, "task", 10)
    assert two == TwoStep(2, "task")  # round(0.25 * 10) + nothing else
    assert [two.phase(s) for s in range(4)] == [1, 1, 2, 2]
    assert [two.uses_task(s) for s in (1, 2)] == [False, True]
    assert [two.uses_kd(s) for s in (1, 2)] == [True, False]
    assert TwoStep(2, "task+kd").uses_kd(5)
    assert two_step_schedule(0.0, "task", 10) is None
    # a resumed run keeps its switch step even when `steps` was raised
    assert two_step_schedule(0.25, "task", 100, {"switch_step": 2, "then": "task"}).switch_step == 2
    for fraction, then, method, match in ((1.0, "task", "dfkd", r"\[0, 1\)"),
                                          (0.5, "kd", "dfkd", "task or task\\+kd"),
                                          (0.5, "task", "none", "needs a KD method")):
        with pytest.raises(DfkdError, match=match):
            check_two_step(fraction, then, method)
    with pytest.raises(DfkdError, match="leaves step one empty"):
        two_step_schedule(0.01, "task", 10)


def test_step_one_is_kd_alone_and_step_two_the_task_loss(setup, tmp_path):
    corpus, teacher = setup
    out = tmp_path / "run"
    code = run_cli("distill", "--teacher", teacher, "--method", "output", "--data", corpus,
                   "--out", out, "--steps", 8, "--valid-every", 4, "--two-step", 0.5,
                   "--two-step-then", "task", "--set", "log_every=3", *FAST)
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert history["run"]["two_step"] == {"switch_step": 4, "then": "task"}
    train = history["train"]
    # a record at the switch (step 4) besides the log_every ones: none mixes the two steps
    assert [(r["step"], r["phase"]) for r in train] == [(3, 1), (4, 1), (6, 2), (8, 2)]
    weight = history["run"]["kd_weight"]
    for record in train[:2]:  # step one: lambda * KD alone; the task loss only logged
        assert record["loss"] == pytest.approx(weight * record["kd"], rel=1e-5)
        assert record["loss"] != pytest.approx(record["task"] + weight * record["kd"], rel=1e-3)
    for record in train[2:]:  # step two, `task`: no KD term, no teacher
        assert "kd" not in record and record["loss"] == pytest.approx(record["task"], rel=1e-6)
    assert [(r["step"], r["phase"]) for r in history["valid"]] == [(4, 1), (8, 2)]


def test_a_run_without_the_schedule_records_no_phase(setup, tmp_path):
    corpus, teacher = setup
    out = tmp_path / "plain"
    assert run_cli("distill", "--teacher", teacher, "--method", "output", "--data", corpus,
                   "--out", out, "--steps", 2, "--valid-every", 2, *FAST) == 0
    history = json.loads((out / "history.json").read_text())
    assert "two_step" not in history["run"] and "phase" not in history["train"][0]
    record = history["train"][0]
    assert record["loss"] == pytest.approx(record["task"] + history["run"]["kd_weight"] * record["kd"],
                                           rel=1e-5)


def test_two_step_with_none_is_an_error_before_anything_is_written(setup, tmp_path, capsys):
    corpus, teacher = setup
    out = tmp_path / "bad"
    code = run_cli("distill", "--teacher", teacher, "--method", "none", "--data", corpus,
                   "--out", out, "--steps", 2, "--two-step", 0.5, *FAST)
    assert code == 1
    assert "kd.two_step needs a KD method" in capsys.readouterr().err
    assert not out.exists()


def test_sigkill_in_step_one_then_resume_across_the_switch_is_bit_exact(setup, tmp_path):
    corpus, teacher = setup
    steps = 12
    args = ["distill", "--teacher", teacher, "--method", "dfkd", "--data", corpus, "--steps", steps,
            "--checkpoint-every", 2, "--valid-every", 6, "--seed", 5, "--two-step", 0.5,
            "--two-step-then", "task+kd", "--set", "log_every=2", *FAST]
    killed = tmp_path / "killed"
    reference, step_at_kill = reference_beside_a_killed_run(args, tmp_path / "ref", killed)
    assert 0 < step_at_kill < steps // 2, "the kill came after the switch: nothing to test"

    resumed = subprocess.run(dfkd_command("distill", "--out", killed, "--resume", "--no-progress"),
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out

    ref, got = (read_checkpoint(r / "last.pt")["state_dict"] for r in (tmp_path / "ref", killed))
    for name in ref:
        assert torch.equal(ref[name], got[name]), name
    histories = [json.loads((r / "history.json").read_text()) for r in (tmp_path / "ref", killed)]
    phases = [[(r["step"], r["phase"]) for r in h["train"]] for h in histories]
    assert phases[0] == phases[1] == [(s, 1 if s <= 6 else 2) for s in range(2, 13, 2)]
    assert [r["loss"] for r in histories[0]["train"]] == [r["loss"] for r in histories[1]["train"]]


def test_a_grid_method_entry_takes_the_schedule_options():
    from dfkd.experiment.config import parse_config
    from dfkd.experiment.jobs import train_config
    from dfkd.experiment.plan import TrainJob

    raw = {"architectures": ["convtasnet"], "seeds": [1],
           "methods": ["none", {"method": "dfkd", "name": "dfkd-2step", "two_step": 0.3,
                                "two_step_then": "task", "adapter": "fixed:500"}]}
    variant = parse_config(raw).variants[1]
    job = TrainJob("convtasnet", "tiny", "dfkd", 1.0, dict(variant.options), "t.pt", "t", 10, 4, 1,
                   "data")
    config = train_config(job)
    assert (config.kd.two_step, config.kd.two_step_then, config.kd.adapter) == (0.3, "task", "fixed:500")
    plain = train_config(TrainJob("convtasnet", "tiny", "dfkd", 1.0, {}, "t.pt", "t", 10, 4, 1, "data"))
    assert plain.kd.two_step == 0.0
    raw["methods"][1]["two_step"] = 1.5
    with pytest.raises(DfkdError, match=r"method 'dfkd-2step': kd.two_step must be in \[0, 1\)"):
        parse_config(raw)

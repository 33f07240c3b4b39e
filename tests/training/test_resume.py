"""A killed run resumes to the very same weights; two DDP processes train like one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfkd import models
from dfkd.checkpoint import model_payload, read_checkpoint, save_checkpoint

from cli_runs import (
    ONE_THREAD_ENV as ENV, dfkd_command, fast_flags, reference_beside_a_killed_run,
)
from tiny_corpus import make_tiny_corpus

FAST = [*fast_flags(), "--set", "log_every=2"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.pt")["state_dict"]


def test_sigkill_then_resume_gives_bitwise_identical_weights(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", train=12)
    steps = 16
    args = ["train", "--arch", "convtasnet", "--data", corpus, "--steps", steps,
            "--checkpoint-every", 2, "--valid-every", 6, "--seed", 5, *FAST]
    killed_run = tmp_path / "killed"
    reference, step_at_kill = reference_beside_a_killed_run(args, tmp_path / "ref", killed_run)
    assert 0 < step_at_kill < steps, "the kill came too late to test a resume"

    resumed = subprocess.run(dfkd_command("train", "--out", killed_run, "--resume", "--no-progress"),
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, out

    ref, got = _weights(tmp_path / "ref"), _weights(killed_run)
    assert ref.keys() == got.keys()
    for name in ref:
        assert torch.equal(ref[name], got[name]), name
    assert read_checkpoint(killed_run / "last.pt")["step"] == steps
    history = [json.loads((run / "history.json").read_text()) for run in (tmp_path / "ref", killed_run)]
    assert [r["step"] for r in history[0]["train"]] == [r["step"] for r in history[1]["train"]]
    assert [r["si_snr"] for r in history[0]["valid"]] == [r["si_snr"] for r in history[1]["valid"]]

    # stop_after trains in parts: stopped at step 6 on the same schedule, then resumed to the end
    parts = tmp_path / "parts"
    first = subprocess.run(dfkd_command(*args, "--out", parts, "--set", "stop_after=6"), env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert read_checkpoint(parts / "last.pt")["step"] == 6
    part_history = json.loads((parts / "history.json").read_text())
    lr_at = {r["step"]: r["lr"] for r in history[0]["train"]}
    assert [(r["step"], r["lr"]) for r in part_history["train"]] == [(s, lr_at[s]) for s in (2, 4, 6)]
    rest = subprocess.run(dfkd_command("train", "--out", parts, "--resume", "--set", "stop_after=null",
                                "--no-progress"), env=ENV, capture_output=True, text=True, timeout=300)
    assert rest.returncode == 0, rest.stderr
    for name, tensor in _weights(parts).items():
        assert torch.equal(ref[name], tensor), name


@pytest.mark.slow
def test_two_ddp_processes_match_one_process(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", train=8)
    torch.manual_seed(123)
    teacher = models.build("convtasnet", "mini")
    save_checkpoint(tmp_path / "teacher.pt", model_payload(teacher, train_seed=123))
    args = ["distill", "--teacher", tmp_path / "teacher.pt", "--method", "spectral", "--data",
            corpus, "--steps", 4, "--valid-every", 4, "--seed", 3, "--set", "grad_ratio_every=2",
            "--device", "cpu", *FAST]
    one = subprocess.Popen(dfkd_command(*args, "--out", tmp_path / "one"), env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "dfkd", *[str(a) for a in args], "--out", str(tmp_path / "two")]
    two = subprocess.run(torchrun, env=ENV, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout + two.stderr
    out, _ = one.communicate(timeout=600)
    assert one.returncode == 0, out

    ref, got = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)
    # only rank 0 wrote: one event file, no stray temporary files
    assert len(list((tmp_path / "two" / "tb").glob("events.out.tfevents.*"))) == 1
    assert not list((tmp_path / "two").glob(".*.tmp"))
    run = json.loads((tmp_path / "two" / "history.json").read_text())
    assert run["run"]["world_size"] == 2
    assert "grad_ratio" in run["train"][0]

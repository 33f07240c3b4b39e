"""Bad input to `dfkd train` / `dfkd distill` (issue 14): damaged history, relative paths, tiny
data, leftovers of interrupted writes, file modes."""

from __future__ import annotations

import json
import os

import torch
import yaml

from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.models import build
from dfkd.training.config import load_run_config, unused_kd_keys
from dfkd.training.run import run_training

from cli_runs import fast_flags, run_cli
from tiny_corpus import make_tiny_corpus

FAST = [*fast_flags(pesq_clips=1), "--set", "log_every=1", "--valid-every", "2"]


def test_resume_from_elsewhere_with_damaged_history_and_stale_temps(tmp_path, monkeypatch, capsys):
    make_tiny_corpus(tmp_path / "corpus", train=4, valid=2)
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    try:
        assert run_cli("train", "--arch", "convtasnet", "--data", "corpus", "--out", "run",
                     "--steps", 2, *FAST) == 0
    finally:
        os.umask(old)
    run = tmp_path / "run"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["root"] == str(tmp_path / "corpus")  # absolute: resumes from anywhere
    for name in ("last.pt", "best.pt", "history.json"):
        assert (run / name).stat().st_mode & 0o777 == 0o644, name  # not mkstemp's 0600
    (run / "history.json").write_text('{"train": [{"step": 1, "loss"')  # cut mid-write
    (run / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert run_cli("train", "--out", run, "--resume", "--steps", 4, "--no-progress") == 0
    err = capsys.readouterr().err
    assert "history.json: damaged" in err and "resuming from the checkpoint at step 2" in err
    assert ".last.pt.abc123.tmp" in err
    assert not list(run.glob(".*.tmp"))
    history = json.loads((run / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == [3, 4]
    assert (run / "history.json.damaged").is_file()


def test_training_set_smaller_than_a_batch_is_refused_before_the_teacher_cache(tmp_path, capsys):
    corpus = make_tiny_corpus(tmp_path / "corpus", train=3, valid=2)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "teacher.pt", model_payload(build("convtasnet", "mini"), train_seed=5))
    out = tmp_path / "student"
    out.mkdir()  # a first start killed before its first checkpoint left a temp file
    (out / ".last.pt.x1y2z3.tmp").write_bytes(b"half")
    assert run_cli("distill", "--teacher", tmp_path / "teacher.pt", "--method", "spectral",
                 "--data", corpus, "--out", out, "--steps", 2, "--cache-teacher",
                 "--cache-dir", tmp_path / "cache", *FAST) == 1
    err = capsys.readouterr().err.strip()
    assert ".last.pt.x1y2z3.tmp, left by an interrupted write" in err
    err = err.splitlines()[-1]
    assert "training set has 3 items, fewer than one batch of 4" in err and str(corpus) in err
    assert err.startswith("dfkd distill: error: ")
    assert not (tmp_path / "cache").exists()
    assert list(out.iterdir()) == []  # the temp file removed, nothing else made


def test_a_resumed_run_may_differ_only_in_options_its_method_never_reads(tmp_path):
    # a `none` run cut short before polarity_to's default changed saved `kd.polarity_to: clean`;
    # the grid resumes it with today's default, which `none` never reads
    make_tiny_corpus(tmp_path / "corpus", train=4, valid=2)
    run = tmp_path / "run"
    assert run_cli("train", "--arch", "convtasnet", "--data", tmp_path / "corpus", "--out", run,
                   "--steps", 4, "--set", "stop_after=2", *FAST) == 0
    config = load_run_config(run / "config.yaml")
    config.kd.polarity_to = "clean" if config.kd.polarity_to == "student" else "student"
    config.stop_after = None
    run_training(config, run, resume=True)
    assert json.loads((run / "history.json").read_text())["train"][-1]["step"] == 4
    assert "kd.polarity_to" in unused_kd_keys("none") and "kd.polarity_to" in unused_kd_keys("sisnr")
    assert "kd.polarity_to" not in unused_kd_keys("dfkd")
    assert "kd.adapter" not in unused_kd_keys("dfkd") and "kd.adapter" in unused_kd_keys("output")


def test_a_second_run_into_a_folder_that_a_running_one_holds_is_refused(tmp_path, capsys):
    from dfkd.files import LOCK_NAME, folder_lock

    corpus = make_tiny_corpus(tmp_path / "corpus", train=4, valid=2)
    out = tmp_path / "run"
    # what the first `nohup dfkd train` holds while it trains (here: this test, in-process)
    with folder_lock(out, "another `dfkd train`/`distill` run"):
        assert run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", out,
                       "--steps", 2, *FAST) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"dfkd train: error: {out}: another `dfkd train`/`distill` run (pid {os.getpid()}) "
                   "is already running in this folder; wait for it to end or stop it first")
    assert not out.exists()  # refused before anything was written
    assert run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", out,
                   "--steps", 2, *FAST) == 0  # once it is free, the run goes ahead
    assert (out / "last.pt").is_file() and not (out / LOCK_NAME).exists()

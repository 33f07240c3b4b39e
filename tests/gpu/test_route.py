"""The GPU route end to end on the CPU (gpu/): the device script on a mini grid with --device cpu,
stopped by its deadline, resumed on a "fresh machine" from the tar, packed; the tar restored into a fresh experiment folder and
record, where `dfkd experiment` scores the final runs and trains nothing again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import yaml

from dfkd import models
from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.experiment.config import load_config
from dfkd.experiment.runner import ExperimentRunner

REPO = Path(__file__).resolve().parents[2]
# The final runs are long enough (about 10 s each on 2 cores, 3x the first call's budget of about
# 3 s, and they start only after the sweep) that the first call's deadline always stops them: at 40
# steps an idle machine once finished one inside that budget.
FINAL_STEPS = 120
FINALS = f"{FINAL_STEPS}steps"
GRID = {
    "name": "gpu-route", "architectures": ["convtasnet"], "seeds": [1], "parallel_runs": 1,
    "methods": ["none", "sisnr"],
    "teacher": {"preset": "mini", "pretrained": "auto", "seed": 0},
    "student": {"preset": "mini", "steps": FINAL_STEPS, "batch_size": 2},
    "sweep": {"factors": [1, 3], "steps": 4, "seeds": [1]},
    "train": {"data": {"segment_seconds": 0.5, "valid_clips": 2, "pesq_clips": 0},
              "valid_every": 60, "checkpoint_every": 10},
    "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0, "complexity": False},
    "report": {"clips": 1},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    from dfkd.data.demo.build import DemoSettings, build_demo_corpus

    root = tmp_path_factory.mktemp("route")
    corpus = root / "corpus"
    build_demo_corpus(corpus, DemoSettings(minutes=0.2, valid_minutes=0.05, test_minutes=0.05,
                                           synthetic=True), progress=False, log=lambda _: None)
    torch.manual_seed(0)
    save_checkpoint(root / "pretrained" / "convtasnet_mini.pt",  # found through the config's roots
                    model_payload(models.build("convtasnet", "mini"), train_seed=0))
    (root / "configs").mkdir()
    (root / "configs" / "route.yaml").write_text(yaml.safe_dump(GRID))
    bundle = root / "bundle"  # what gpu/bundle.sh study writes (no wheels: this Python has them)
    subprocess.run([sys.executable, "gpu/corpus_sources.py", "pack", "--corpus", str(corpus),
                    "--out", str(bundle / "corpus")], cwd=REPO, check=True, env=_env(root))
    (root / "record").mkdir()  # the committed record: empty here
    return {"root": root, "corpus": corpus, "bundle": bundle}


def _env(root: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHON": sys.executable,
            "GPU_WORK": str(root / "work"), "OUT": str(root / "out"),
            "GPU_BUNDLE": str(root / "bundle"), "OMP_NUM_THREADS": "1", **extra}


def _device(setup: dict[str, Path], deadline: int) -> str:
    root = setup["root"]
    shutil.rmtree(root / "out", ignore_errors=True)  # the device tool empties $OUT before each call
    done = subprocess.run(
        ["bash", "gpu/device_study.sh", "study", "--device", "cpu", "--parallel-runs", "1",
         "--deadline", str(deadline), "--config", str(root / "configs" / "route.yaml"),
         "--record", str(root / "record"), "--data", str(setup["corpus"])],
        cwd=REPO, env=_env(root, GPU_STOP_MARGIN="8", GPU_PACK_EVERY="5", GPU_MIN_BUDGET="0"),
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _members(tar: Path) -> list[str]:
    with tarfile.open(tar) as handle:
        return handle.getnames()


def test_device_script_then_restore_on_the_cpu_trains_nothing_twice(setup):
    root = setup["root"]
    # 1. a command whose deadline comes before the grid could finish: nothing final is trained,
    #    the tar is there all the same
    log = _device(setup, deadline=14)
    assert "corpus" in log and "all" in log and "equal the packed corpus" in log  # bit for bit
    tar = root / "out" / "record.tar.gz"
    assert tar.is_file() and "session.json" in _members(tar)
    assert not list((root / "work" / "exp").glob(f"runs/convtasnet/*/*{FINALS}*/trained.json"))

    # 2. the same command on a fresh machine: the last tar travels in .gpu/ (gpu/bundle.sh
    #    resume), the work folder is gone; it resumes from the tar and trains the rest
    shutil.copyfile(tar, setup["bundle"] / "resume.tar.gz")
    shutil.rmtree(root / "work")
    log = _device(setup, deadline=180)
    assert "every cell trained; test scores deferred" in log
    names = _members(tar)
    finals = [n for n in names if FINALS in n and n.endswith("/best.pt")]
    assert len(finals) == 2  # none and sisnr, seed 1, waiting for their test scores
    assert not any(FINALS in n and n.endswith("last.pt") for n in names)  # trained: best.pt only
    recorded = [n for n in names if n.startswith("record/") and n.endswith("done.json")]
    assert len(recorded) == 2  # the two sweep runs, scored on the validation split
    session = json.loads(tarfile.open(tar).extractfile("session.json").read())
    assert session["pending_runs"] == 4 and "command" in session and session["machine"]

    # 3. on the CPU: a fresh experiment folder and the committed record take the tar in
    record, out = root / "cpu-record", root / "cpu-exp"
    shutil.copytree(root / "record", record)
    done = subprocess.run(["bash", "gpu/restore.sh", str(tar), "--record", str(record),
                           "--out", str(out)], cwd=REPO, env=_env(root), capture_output=True,
                          text=True, check=True)
    assert "2 scored cell(s) added" in done.stdout and "4 of 4 run folder(s)" in done.stdout
    config = load_config(root / "configs" / "route.yaml")
    runner = ExperimentRunner(config, out, setup["corpus"], progress=False, device="cpu",
                              record=record, trainer=_no_training)
    results = runner.run()
    assert runner.counts["trained"] == 0 and runner.counts["scored"] == 1 + 2  # teacher, finals
    assert {r.model for r in results.rows} == {"noisy", "teacher", "none", "sisnr"}
    trained = json.loads(next(out.glob(f"runs/convtasnet/none/*{FINALS}*/trained.json")).read_text())
    assert trained["device"] == "cpu" and trained["machine"]  # where the "GPU" trained it
    assert len(list(record.rglob("done.json"))) == 2 + 3  # the record now holds every cell


def _no_training(job, run_dir):  # the CPU must reuse every cell the device trained
    raise AssertionError(f"retrained {run_dir}")

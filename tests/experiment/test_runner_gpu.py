"""The grid's options for a time-limited GPU machine (gpu/device_study.sh): more runs at once,
a deadline, test scores left to a later run; none of them changes what a run is."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dfkd.errors import DfkdError
from dfkd.experiment.config import parse_config
from dfkd.evaluation.scoring import default_workers
from dfkd.experiment.runner import ExperimentRunner

from test_runner import FakeTrainer, _raw, corpus  # noqa: F401 - the fixture


def _runner(tmp_path, corpus, trainer=None, **options) -> ExperimentRunner:
    config = parse_config(_raw(evaluation={"metrics": ["si_snr", "si_snri"], "workers": 0,
                                           "rtf_threads": 1, "heldout": "/nowhere"}))
    return ExperimentRunner(config, tmp_path / "exp", corpus, trainer=trainer or FakeTrainer(),
                            roots=[tmp_path], progress=False, device="cpu", **options)


def _names(runner: ExperimentRunner) -> list[str]:
    plan = runner.plan()["convtasnet"]
    return [str(c.run_dir) for c in [plan["teacher"], *plan["sweep"], *plan["final"]]]


def test_parallel_runs_deadline_and_deferral_leave_every_run_name_as_it_was(tmp_path, corpus):
    plain = _runner(tmp_path, corpus, defer_test_scores=True)  # the held-out folder is not needed
    other = _runner(tmp_path, corpus, parallel_runs=2, deadline=time.time() + 60,
                    defer_test_scores=True)
    assert _names(plain) == _names(other)
    assert other.parallel_runs == min(2, default_workers()) and plain.parallel_runs == 1
    with pytest.raises(DfkdError, match="--parallel-runs must be a positive integer"):
        _runner(tmp_path, corpus, parallel_runs=0, defer_test_scores=True)
    with pytest.raises(DfkdError, match="held-out corpus folder not found"):
        _runner(tmp_path, corpus)  # without deferral the held-out corpus is needed


@pytest.mark.parametrize("parallel", [1, 2])  # 2: the cells reach the deadline in worker processes
def test_a_passed_deadline_starts_nothing_and_writes_no_tables(tmp_path, corpus, parallel):
    if parallel > default_workers():
        pytest.skip("one usable core: no parallel runs")
    runner = _runner(tmp_path, corpus, deadline=time.time() - 1, defer_test_scores=True,
                     parallel_runs=parallel)
    assert runner.run() is None
    # unfinished: the teacher, the 4 sweep runs and the 2 `none` finals that run beside them
    assert runner.trainer.calls == [] and runner.stopped == 1 + 4 + 2
    assert not (tmp_path / "exp" / "results.md").exists()


def test_deferred_test_scores_are_made_by_a_later_run_that_trains_nothing(tmp_path, corpus):
    gpu = _runner(tmp_path, corpus, defer_test_scores=True)
    assert gpu.run() is None and gpu.stopped == 0
    # 1 teacher + 2 variants x 2 lambdas of sweep + 3 x 2 finals, minus the 2 finals that are
    # sweep runs (same steps and seed): all trained; only the sweeps scored (validation)
    assert len(gpu.trainer.calls) == 9 and gpu.counts["scored"] == 4
    # `none` needs no lambda: its finals run beside the sweep, before any KD final
    methods = [j.method for j in gpu.trainer.calls]  # teacher, then 4 sweeps + 2 none, then KD
    assert methods[0] is None and sorted(methods[1:7]) == ["dfkd"] * 4 + ["none"] * 2
    assert methods[7:] == ["dfkd", "dfkd"]  # the KD finals of seed 2, after the lambda choice
    plan = gpu.plan()["convtasnet"]
    assert all(gpu.is_trained(c) for c in plan["final"])
    assert not any(gpu.is_scored(c) for c in [plan["teacher"], *plan["final"]])
    trained = json.loads((plan["final"][0].run_dir / "trained.json").read_text())
    assert trained["device"] == "cpu" and trained["parallel_runs"] == gpu.parallel_runs

    config = parse_config(_raw(evaluation={"metrics": ["si_snr", "si_snri"], "workers": 0,
                                           "rtf_threads": 1}))
    cpu = ExperimentRunner(config, tmp_path / "exp", corpus, trainer=FakeTrainer(),
                           roots=[tmp_path], progress=False, device="cpu")
    results = cpu.run()
    assert cpu.trainer.calls == [] and cpu.counts["scored"] == 1 + 6
    assert {r.model for r in results.rows} >= {"teacher", "none", "dfkd", "dfkd-fixed"}


@pytest.mark.parametrize("flags, message", [
    (["--deadline", "0"], "--deadline must be a positive number of seconds"),
    (["--report-only", "--defer-test-scores"], "--report-only trains nothing"),
])
def test_bad_gpu_flags_are_clear_errors(tmp_path, capsys, flags, message):
    from dfkd import cli

    config = str(Path(__file__).resolve().parents[2] / "configs" / "demo_quick.yaml")
    assert cli.main(["experiment", "--config", config, "--out", str(tmp_path), *flags]) == 1
    assert message in capsys.readouterr().err


class DeadlineAfter(FakeTrainer):
    """Passes the grid's deadline once ``calls`` runs have trained: a machine whose time ends."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.limit = calls
        self.runner: ExperimentRunner | None = None

    def __call__(self, job, run_dir: Path) -> None:
        super().__call__(job, run_dir)
        if len(self.calls) == self.limit:
            self.runner.deadline = time.time() - 1


def test_a_deadline_during_the_finals_still_records_the_lambda_choice(tmp_path, corpus):
    config = parse_config(_raw(evaluation={"metrics": ["si_snr", "si_snri"], "workers": 0,
                                           "rtf_threads": 1}))
    # in order: the teacher, `none`'s 2 finals, dfkd's 2 sweep runs and then its final of seed 2
    # (seed 1's is a sweep run), dfkd-fixed's 2 sweep runs: the deadline passes after the last
    # sweep run, so dfkd-fixed's final of seed 2 is the one left
    trainer = DeadlineAfter(1 + 2 + 3 + 2)
    runner = ExperimentRunner(config, tmp_path / "exp", corpus, trainer=trainer, roots=[tmp_path],
                              progress=False, device="cpu", record=tmp_path / "record")
    trainer.runner = runner
    assert runner.run() is None and len(trainer.calls) == 8 and runner.stopped == 1
    assert [j.method for j in trainer.calls[3:6]] == ["dfkd"] * 3
    assert not (tmp_path / "exp" / "results.md").exists()
    # the sweep was settled before the deadline: its choice is written
    chosen = json.loads((tmp_path / "exp" / "sweeps.json").read_text())["convtasnet"]
    assert set(chosen) == {"dfkd", "dfkd-fixed"}
    later = ExperimentRunner(config, tmp_path / "exp", corpus, trainer=FakeTrainer(),
                             roots=[tmp_path], progress=False, device="cpu", record=tmp_path / "record")
    assert later.run() is not None and len(later.trainer.calls) == 1  # only what was left

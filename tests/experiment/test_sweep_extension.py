"""The lambda sweep goes on upwards while a method's best lambda is its largest (``sweep.extend``):
the rule, its config checks, and the grid that trains the extensions, chooses among them and keeps
the workers busy with the settled methods' final runs meanwhile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dfkd import models
from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.errors import DfkdError
from dfkd.experiment.config import parse_config
from dfkd.experiment.plan import TrainJob, default_weight, sweep_extension
from dfkd.experiment.runner import ExperimentRunner

from tiny_corpus import make_tiny_grid_corpus


def _raw(**sweep) -> dict:
    return {
        "name": "extend", "architectures": ["convtasnet"], "seeds": [1, 2],
        "methods": ["none", "dfkd", "output"],
        "teacher": {"preset": "mini", "pretrained": "none", "steps": 2, "batch_size": 2, "seed": 0},
        "student": {"preset": "mini", "steps": 3, "batch_size": 2},  # finals: 3, sweeps: 2
        "sweep": {"factors": [1, 3], "steps": 2, "seeds": [1], "extend": [10, 30, 100], **sweep},
        "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0, "complexity": False},
        "report": {"clips": 0},
    }


def _variant(config, name: str):
    return next(v for v in config.variants if v.name == name)


# ------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("scores, expected", [
    ({1: 1.0, 3: 1.5}, 10),               # best at the top, 0.5 dB ahead: go on at 10x
    ({1: 1.0, 3: 1.5, 10: 2.0}, 30),      # still rising: the next factor
    ({1: 1.0, 3: 1.5, 10: 2.0, 30: 1.6}, None),  # the top was found (10x)
    ({1: 1.0, 3: 1.05}, None),            # ahead by less than the 0.1 dB margin: noise
    ({1: 2.0, 3: 1.5}, None),             # best at the bottom: below the sweep is `none`
    ({1: 1.0, 3: 1.5, 10: 2.0, 30: 2.5, 100: 3.0}, None),  # every extension used
    ({3: 1.0}, None),                     # one candidate: no trend to follow
    ({1: -math.inf, 3: -math.inf}, None),  # both diverged
])
def test_the_sweep_extends_while_its_top_lambda_wins_by_more_than_the_margin(scores, expected):
    config = parse_config(_raw())
    dfkd = _variant(config, "dfkd")
    centre = default_weight(dfkd)
    means = {round(f * centre, 10): v for f, v in scores.items()}
    got = sweep_extension(config, dfkd, means)
    assert got == (None if expected is None else pytest.approx(expected * centre))


def test_no_extension_without_sweep_extend_and_a_margin_of_zero_follows_any_gain():
    assert sweep_extension(parse_config(_raw(extend=[])), _variant(parse_config(_raw()), "dfkd"),
                           {0.3: 1.0, 0.9: 9.0}) is None
    config = parse_config(_raw(extend_margin_db=0))
    dfkd = _variant(config, "dfkd")
    centre = default_weight(dfkd)
    assert sweep_extension(config, dfkd, {centre: 1.0, 3 * centre: 1.0001}) == pytest.approx(10 * centre)


@pytest.mark.parametrize("sweep, message", [
    ({"extend": [3, 10]}, "`sweep.extend` must be increasing positive numbers above the largest of "
                          "`sweep.factors` (3), not [3, 10]"),
    ({"extend": [30, 10]}, "not [30, 10]"),
    ({"extend": ["x"]}, "not ['x']"),
    ({"extend_margin_db": -0.1}, "`sweep.extend_margin_db` must be a number >= 0, not -0.1"),
    ({"extend_margin_db": "0.1"}, "not '0.1'"),
])
def test_bad_sweep_extensions_are_refused_with_the_key_named(sweep, message):
    with pytest.raises(DfkdError, match="extend") as err:
        parse_config(_raw(**sweep), where="study.yaml")
    assert str(err.value).startswith("study.yaml: ") and message in str(err.value)


# ------------------------------------------------------------------------------------ the grid
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tiny_grid_corpus(tmp_path_factory.mktemp("corpus"))


class ScoredByLambda:
    """A fake trainer whose run's validation SI-SNR (in its history) is a function of lambda over
    the method's default: `dfkd` peaks at 10x, `output` is flat."""

    CURVES = {"dfkd": {1: 1.0, 3: 1.5, 10: 2.0, 30: 1.6, 100: 0.5}, "output": {1: 1.0, 3: 1.05}}

    def __init__(self, config) -> None:
        self.centres = {v.method: default_weight(v) for v in config.variants if v.is_kd}
        self.calls: list[TrainJob] = []

    def factor(self, job: TrainJob) -> float:
        return round(job.kd_weight / self.centres[job.method], 6)

    def __call__(self, job: TrainJob, run_dir: Path) -> None:
        self.calls.append(job)
        torch.manual_seed(len(self.calls))
        save_checkpoint(run_dir / "last.pt", {"step": job.steps})
        save_checkpoint(run_dir / "best.pt", model_payload(models.build(job.arch, job.preset)))
        score = self.CURVES.get(job.method, {}).get(self.factor(job), 0.0) if job.kd_weight else 0.0
        (run_dir / "history.json").write_text(json.dumps({"valid": [{"step": job.steps, "si_snr": score}]}))


def _runner(tmp_path: Path, corpus: Path, trainer=None) -> ExperimentRunner:
    config = parse_config(_raw())
    runner = ExperimentRunner(config, tmp_path / "exp", corpus, trainer=trainer or ScoredByLambda(config),
                              roots=[tmp_path], progress=False, device="cpu")
    runner.has_valid_files = lambda: False  # the sweep score is the history's (the curves above)
    return runner


def test_the_grid_extends_a_rising_sweep_and_starts_each_settled_methods_finals_at_once(tmp_path, corpus):
    runner = _runner(tmp_path, corpus)
    trainer = runner.trainer
    assert len(runner.plan()["convtasnet"]["sweep"]) == 4  # nothing scored: no extension known yet
    results = runner.run()

    kind = {2: "sweep", 3: "final"}
    order = [(kind[c.steps], c.method, trainer.factor(c) if c.kd_weight else 0, c.seed)
             for c in trainer.calls[1:]]  # after the teacher
    # `none`'s finals first (no lambda to wait for), then the sweep; each follow-up starts as soon
    # as what it waits for is scored, before the cells queued earlier: dfkd, rising at 3x, gets
    # 10x, then 30x, which loses to 10x, so dfkd's finals at 10x come next; then output's sweep,
    # flat (1.05 at 3x is within the margin), and its finals at 3x. Nothing at 100x.
    assert order == [("final", "none", 0, 1), ("final", "none", 0, 2),
                     ("sweep", "dfkd", 1, 1), ("sweep", "dfkd", 3, 1), ("sweep", "dfkd", 10, 1),
                     ("sweep", "dfkd", 30, 1), ("final", "dfkd", 10, 1), ("final", "dfkd", 10, 2),
                     ("sweep", "output", 1, 1), ("sweep", "output", 3, 1),
                     ("final", "output", 3, 1), ("final", "output", 3, 2)]
    centre = default_weight(_variant(runner.config, "dfkd"))
    sweep = results.sweeps["convtasnet"]["dfkd"]
    assert sweep["chosen"] == pytest.approx(10 * centre)
    assert sorted(sweep["candidates"]) == pytest.approx([centre, 3 * centre, 10 * centre, 30 * centre])
    assert len(results.sweeps["convtasnet"]["output"]["candidates"]) == 2

    # started again: every cell (extensions included) is found done; a report-only run and the
    # dry-run plan see the extensions too
    again = _runner(tmp_path, corpus)
    again.run()
    assert again.trainer.calls == [] and again.counts["trained"] == 0
    plan = _runner(tmp_path, corpus).plan()["convtasnet"]
    assert len(plan["sweep"]) == 6 and all(again.is_scored(c) for c in plan["sweep"])
    report = _runner(tmp_path, corpus).run(report_only=True)
    assert report.sweeps["convtasnet"]["dfkd"]["chosen"] == pytest.approx(10 * centre)


def test_the_dry_run_plan_shows_the_next_extension_once_the_sweep_is_scored(tmp_path, corpus):
    runner = _runner(tmp_path, corpus)
    base = runner.plan()["convtasnet"]["sweep"]
    runner.run_cell(runner.teachers()["convtasnet"])
    runner.run_cells(base)
    sweep = _runner(tmp_path, corpus).plan()["convtasnet"]["sweep"]
    assert [c.kd_weight for c in sweep[len(base):]] == [
        pytest.approx(10 * default_weight(_variant(runner.config, "dfkd")))]
    assert not runner.is_trained(sweep[-1])  # pending: listed, not run


def test_a_follow_up_cell_starts_before_the_cells_queued_earlier(tmp_path, corpus, monkeypatch):
    """run_cells with two workers: what ``then`` returns for a finished cell is started next, so
    a chain (a sweep's extensions, then its finals) is not left until the queue is empty."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    runner = _runner(tmp_path, corpus)
    runner.parallel_runs = 2
    monkeypatch.setattr(runner, "_worker_pool", lambda: ThreadPoolExecutor(2))  # in-process workers
    monkeypatch.setattr(runner, "is_finished", lambda cell: False)
    started: list[str] = []
    chain_done = threading.Event()

    def run_cell(cell: str, bar=None) -> dict[str, int]:
        started.append(cell)
        if cell == "long":  # holds one worker until the chain has gone through the other
            assert chain_done.wait(timeout=30), started
        if cell == "a2":
            chain_done.set()
        return {}

    monkeypatch.setattr(runner, "run_cell", run_cell)
    chain = {"a": ["a1"], "a1": ["a2"]}
    runner.run_cells(["a", "long", "b", "c"], then=lambda cell: chain.get(cell, []))
    assert started == ["a", "long", "a1", "a2", "b", "c"]

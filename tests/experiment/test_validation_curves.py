"""The validation-curve figure: mean over seeds of the final runs' history.json, per row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfkd.experiment.curves import mean_curve, validation_points
from dfkd.experiment.report import validation_curves

from test_runner import FakeTrainer, _runner, corpus  # noqa: F401 - the fixture

STEPS = (2, 4)  # the fake validates at these steps (the grid's runs are 4 steps long)


class CurveFakeTrainer(FakeTrainer):
    """The fake trainer, plus a history.json whose validation scores are known in advance:
    SI-SNR = step + seed (+ 10 for DFKD rows); `none` also logs SI-SNRi = SI-SNR - 2."""

    def __call__(self, job, run_dir: Path) -> None:
        super().__call__(job, run_dir)
        valid = []
        for step in STEPS:
            value = step + job.seed + (10.0 if job.method == "dfkd" else 0.0)
            record = {"step": step, "si_snr": value}
            if job.method == "none":
                record["si_snri"] = value - 2.0
            valid.append(record)
        (run_dir / "history.json").write_text(json.dumps({"valid": valid}))


def test_mean_curve_keeps_common_steps_and_falls_back_to_si_snr():
    a = {"valid": [{"step": 1, "si_snr": 1.0}, {"step": 2, "si_snr": 3.0}, {"step": 3, "si_snr": 9.0}]}
    b = {"valid": [{"step": 1, "si_snr": 2.0}, {"step": 2, "si_snr": float("nan")},
                   {"step": 3, "si_snr": 5.0, "si_snri": 1.0}]}
    # a logged no SI-SNRi, so both fall back to SI-SNR; step 2 is not finite in b: dropped
    assert mean_curve([a, b]) == ("si_snr", [1, 3], [1.5, 7.0])
    assert validation_points(b, "si_snri") == {3: 1.0}
    assert mean_curve([]) is None and mean_curve([{"valid": []}]) is None


def test_grid_draws_validation_curves_of_none_the_best_baseline_and_dfkd(tmp_path, corpus):
    runner = _runner(tmp_path, corpus, CurveFakeTrainer())
    results = runner.run()
    out = tmp_path / "exp"
    assert (out / "plots" / "validation.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert "plots/validation.png" in page and "against the best baseline" in page
    curves = validation_curves(runner.report_inputs(runner.teachers(), runner.plan()["convtasnet"]["final"]),
                               results)["convtasnet"]
    # the only non-DFKD student is none: it is the best baseline and is drawn once
    assert results.best_baseline["convtasnet"] == "none"
    assert set(curves) == {"none", "dfkd", "dfkd-fixed"}
    # mean over seeds 1 and 2 of step + seed (- 2 as SI-SNRi for none; + 10 for DFKD, SI-SNR)
    assert curves["none"] == ("si_snri", [2, 4], pytest.approx([1.5, 3.5]))
    assert curves["dfkd"] == ("si_snr", [2, 4], pytest.approx([13.5, 15.5]))

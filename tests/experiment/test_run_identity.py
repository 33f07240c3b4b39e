"""Run names across a changed option default (dfkd.distill.methods.LEGACY_DEFAULTS).

A grid cell's run folder is named by a hash of what it trains; an option left at its default is
not named. If that default changes, an old run must not be reused for a cell that now trains
differently, and a cell that pins the old value must keep finding its old run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dfkd.distill import methods
from dfkd.experiment.plan import TrainJob, identity_kd_options
from dfkd.training.config import TrainConfig, dump_yaml, load_run_config


def _job(method: str, **options) -> TrainJob:
    return TrainJob("convtasnet", "nano", method, 0.3, options, "/t.pt", "teacher-x", 80, 8, 2, "/data")


def test_today_an_option_at_its_legacy_value_is_not_named():
    assert methods.LEGACY_DEFAULTS["polarity_to"] == methods.POLARITY_TO_DEFAULT == "clean"
    assert _job("dfkd").key() == _job("dfkd", polarity_to="clean").key()
    assert _job("dfkd").key() != _job("dfkd", polarity_to="student").key()
    assert identity_kd_options("dfkd", {"polarity_to": "student", "adapter": "fixed:1000"}) == {
        "polarity_to": "student", "adapter": "fixed:1000"}
    # methods without the option, and `none`, are named by what they were given
    assert identity_kd_options("sisnr", {}) == {}
    assert identity_kd_options(None, {}) == {}


def test_the_study_s_recorded_run_names_are_what_the_plan_computes():
    # one clean-sign and one student-sign final of the recorded Conv-TasNet study
    root = Path(__file__).resolve().parents[2] / "records" / "study" / "runs" / "convtasnet"
    for row in ("dfkd", "dfkd-aligned"):
        run = next(p for p in sorted((root / row).iterdir()) if "seed2-8000steps" in p.name)
        job = json.loads((run / "trained.json").read_text())["job"]
        rebuilt = TrainJob(**{**job, "teacher": None, "teacher_id": job["teacher_id"]})
        assert run.name.endswith(rebuilt.key()), (row, run.name, rebuilt.key())


def test_a_changed_default_names_the_new_value_and_keeps_pinned_old_runs(monkeypatch):
    # as if runs had been named when the default was `student`, and the default is now `clean`
    monkeypatch.setitem(methods.LEGACY_DEFAULTS, "polarity_to", "student")
    assert identity_kd_options("dfkd", {}) == {"polarity_to": "clean"}
    assert identity_kd_options("output", {"polarity_to": "student"}) == {}
    unnamed, pinned_old = _job("output"), _job("output", polarity_to="student")
    assert unnamed.key() != pinned_old.key()
    # the pinned cell keeps the name an old cell without the option had
    assert pinned_old.identity()["kd_options"] == {}


@pytest.mark.parametrize("legacy", ["clean", "student"])
def test_a_saved_run_config_without_the_key_means_its_legacy_value(tmp_path, monkeypatch, legacy):
    monkeypatch.setitem(methods.LEGACY_DEFAULTS, "polarity_to", legacy)
    config = TrainConfig()
    config.kd.method = "dfkd"
    text = dump_yaml(config)
    old = tmp_path / "old.yaml"  # written before the option existed
    old.write_text("\n".join(line for line in text.splitlines() if "polarity_to" not in line) + "\n")
    assert load_run_config(old).kd.polarity_to == legacy
    pinned = tmp_path / "pinned.yaml"
    config.kd.polarity_to = "student" if legacy == "clean" else "clean"
    pinned.write_text(dump_yaml(config))
    assert load_run_config(pinned).kd.polarity_to == config.kd.polarity_to

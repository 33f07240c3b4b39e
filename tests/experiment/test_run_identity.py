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
from dfkd.experiment.config import load_config
from dfkd.experiment.plan import TrainJob, identity_kd_options
from dfkd.training.config import TrainConfig, dump_yaml, load_run_config


def _job(method: str, **options) -> TrainJob:
    return TrainJob("convtasnet", "nano", method, 0.3, options, "/t.pt", "teacher-x", 80, 8, 2, "/data")


def test_the_new_default_is_named_and_the_legacy_value_is_not():
    # polarity_to's default became `student`; every run named before meant `clean`
    assert methods.LEGACY_DEFAULTS["polarity_to"] == "clean"
    assert methods.POLARITY_TO_DEFAULT == "student"
    assert _job("dfkd").key() == _job("dfkd", polarity_to="student").key()
    assert _job("dfkd").key() != _job("dfkd", polarity_to="clean").key()
    assert identity_kd_options("dfkd", {}) == {"polarity_to": "student"}
    assert identity_kd_options("output", {"polarity_to": "clean", "norm": "mse"}) == {"norm": "mse"}
    # methods without the option, and `none`, are named by what they were given
    assert identity_kd_options("sisnr", {}) == {}
    assert identity_kd_options(None, {}) == {}


def test_the_study_s_recorded_run_names_are_what_its_config_plans_today():
    # a clean-sign row (pinned in configs/study.yaml) and a student-sign row of the recorded
    # Conv-TasNet study: both keep the run folders they were trained in
    root = Path(__file__).resolve().parents[2]
    study = load_config(root / "configs" / "study.yaml")
    for row in ("output", "dfkd", "dfkd-rolloff", "dfkd-aligned"):
        options = next(v for v in study.variants if v.name == row).options
        runs = root / "records" / "study" / "runs" / "convtasnet" / row
        run = next(p for p in sorted(runs.iterdir()) if "seed2-8000steps" in p.name)
        job = json.loads((run / "trained.json").read_text())["job"]
        planned = TrainJob(**{**job, "kd_options": dict(options), "teacher": None})
        assert run.name.endswith(planned.key()), (row, run.name, planned.key())


def test_a_row_pinned_to_the_legacy_value_keeps_the_name_an_unnamed_row_had(monkeypatch):
    # the name of an old cell without the option, computed as it was before the default changed
    monkeypatch.setitem(methods.LEGACY_DEFAULTS, "polarity_to", methods.POLARITY_TO_DEFAULT)
    old_unnamed = _job("output").key()
    monkeypatch.setitem(methods.LEGACY_DEFAULTS, "polarity_to", "clean")
    assert _job("output", polarity_to="clean").key() == old_unnamed
    assert _job("output").key() != old_unnamed


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

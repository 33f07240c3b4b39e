"""The grid's record (dfkd.experiment.record): a grid whose experiment folder is lost comes back
from the record's text files without training or scoring anything again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dfkd import models
from dfkd.errors import DfkdError
from dfkd.experiment.record import TRAIN_RECORDS_KEPT, recorded_cells, save_cell

from test_runner import METRICS, FakeTrainer, _runner, corpus  # noqa: F401 - the fixture


class RecordingFakeTrainer(FakeTrainer):
    """The fake trainer, plus the run's config.yaml and history.json as the real trainer writes."""

    def __call__(self, job, run_dir: Path) -> None:
        super().__call__(job, run_dir)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(
            {"model": {"arch": job.arch, "preset": job.preset, "overrides": {}}}))
        (run_dir / "history.json").write_text(json.dumps({"valid": [{"step": job.steps, "si_snr": 1.0}]}))


def _grid(tmp_path, corpus, trainer, seeds=(1, 2)):
    evaluation = {"metrics": METRICS, "workers": 0, "rtf_threads": 1, "heldout": str(corpus)}
    return _runner(tmp_path, corpus, trainer, methods=["none", "dfkd"], seeds=list(seeds),
                   evaluation=evaluation, record=tmp_path / "record")


def test_a_lost_grid_comes_back_from_its_record(tmp_path, corpus):
    first = _grid(tmp_path, corpus, RecordingFakeTrainer())
    results = first.run()
    record, out = tmp_path / "record", tmp_path / "exp"
    kept = sorted(p.relative_to(record).as_posix() for p in record.rglob("*") if p.is_file())
    assert not [k for k in kept if k.endswith(".pt")]  # scores and curves, never weights
    assert json.loads((record / "record.json").read_text())["data"] == str(corpus.resolve())
    # scored: the teacher and 4 finals on the test and the held-out split, 2 sweeps on valid
    assert recorded_cells(record) == 5 * 2 + 2
    assert len([k for k in kept if "/eval-heldout-" in k and k.endswith("done.json")]) == 5
    for run in (out / "runs" / "convtasnet" / "none").iterdir():
        for name in ("trained.json", "config.yaml"):
            assert (record / run.relative_to(out) / name).read_bytes() == (run / name).read_bytes()

    shutil.rmtree(out)  # the session's folder is gone; the record (committed) is not
    again = _grid(tmp_path, corpus, RecordingFakeTrainer())
    results2 = again.run()
    assert again.trainer.calls == [] and again.counts["scored"] == 0
    assert results2.to_dict()["rows"] == results.to_dict()["rows"]  # params/MACs rebuilt too
    rows = {r.model: r for r in results2.rows}
    assert rows["none"].params == models.count_params(models.build("convtasnet", "mini"))
    assert "<audio" not in (out / "report.html").read_text()  # no weights, nothing to play
    assert json.loads((out / "heldout" / "results.json").read_text())["rows"]


def test_a_restored_report_plays_the_pretrained_teacher_and_says_which_students_it_cannot(
        tmp_path, corpus):
    from dfkd.checkpoint import model_payload, save_checkpoint

    (tmp_path / "pretrained").mkdir()
    save_checkpoint(tmp_path / "pretrained" / "convtasnet_mini.pt",
                    model_payload(models.build("convtasnet", "mini")))
    evaluation = {"metrics": METRICS, "workers": 0, "rtf_threads": 1}
    teacher = {"preset": "mini", "pretrained": "auto", "seed": 0}

    def grid():
        return _runner(tmp_path, corpus, RecordingFakeTrainer(), methods=["none", "dfkd"], seeds=[1],
                       evaluation=evaluation, teacher=teacher, record=tmp_path / "record")

    grid().run()
    page = (tmp_path / "exp" / "report.html").read_text()
    assert "student none" in page and "Not played" not in page  # the weights are here
    shutil.rmtree(tmp_path / "exp")
    grid().run(report_only=True)
    page = (tmp_path / "exp" / "report.html").read_text()
    assert "teacher (convtasnet)" in page and "<audio" in page  # pretrained: still here
    assert ("Not played: student none (restored from the record: scores, no weights here); "
            "student dfkd (restored from the record: scores, no weights here).") in page


def test_a_restored_grid_trains_only_what_the_record_lacks(tmp_path, corpus):
    _grid(tmp_path, corpus, RecordingFakeTrainer(), seeds=(1,)).run()
    shutil.rmtree(tmp_path / "exp")
    # a third seed needs the teacher, which was trained in the grid: its weights went with the folder
    with pytest.raises(DfkdError, match="the teacher's weights are not here"):
        _grid(tmp_path, corpus, RecordingFakeTrainer(), seeds=(1, 3)).run()
    # the students of the recorded seed alone need nothing
    again = _grid(tmp_path, corpus, RecordingFakeTrainer(), seeds=(1,))
    again.run(report_only=True)
    assert again.trainer.calls == []


def test_a_record_of_another_corpus_path_is_refused(tmp_path, corpus):
    _grid(tmp_path, corpus, RecordingFakeTrainer(), seeds=(1,)).run()
    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved)
    runner = _runner(tmp_path, moved, RecordingFakeTrainer(), methods=["none"], seeds=[1],
                     evaluation={"metrics": METRICS, "workers": 0}, record=tmp_path / "record")
    with pytest.raises(DfkdError, match=r"record: this record was made on the corpus at .*, not .*moved"):
        runner.run()


def test_the_record_keeps_validation_whole_and_thins_the_training_log(tmp_path):
    from dfkd.experiment.plan import Cell, TrainJob

    out, record = tmp_path / "exp", tmp_path / "record"
    run = out / "runs" / "convtasnet" / "none" / "lam0-seed1-8000steps-abc"
    train = [{"step": 10 * (i + 1), "task": float(i)} for i in range(800)]
    valid = [{"step": 500 * (i + 1), "si_snr": float(i)} for i in range(16)]
    (run / "eval-test-x").mkdir(parents=True)
    (run / "history.json").write_text(json.dumps({"run": {"seed": 1}, "train": train, "valid": valid}))
    (run / "trained.json").write_text("{}")
    (run / "eval-test-x" / "done.json").write_text("{}")
    job = TrainJob("convtasnet", "mini", "none", 0.0, {}, None, None, 8000, 2, 1, "/data")
    cell = Cell("final", "convtasnet", "none", 1, run, job=job, eval_tag="x")
    assert save_cell(cell, out, record) == 3
    kept = json.loads((record / run.relative_to(out) / "history.json").read_text())
    assert kept["valid"] == valid and kept["run"] == {"seed": 1}
    steps = [r["step"] for r in kept["train"]]
    assert len(steps) == TRAIN_RECORDS_KEPT and steps[0] == 10 and steps[-1] == 8000
    assert steps == sorted(steps) and set(steps) <= {r["step"] for r in train}
    assert kept["train_thinned"] == {"kept": TRAIN_RECORDS_KEPT, "of": 800}
    assert save_cell(cell, out, record) == 0  # nothing changed: nothing written


def test_the_committed_record_is_not_git_ignored():
    # the `runs/` rule of .gitignore once swallowed records/<name>/runs/: the record then never landed
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    probe = "records/study/runs/dptnet/none/lam0-seed1-8000steps-abc/eval-test-x/done.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=repo).returncode == 0
    assert not ignored, f"{probe} is ignored by .gitignore"
    # a work tree whose runs/ links to a folder elsewhere: git probes no path beyond a link
    runs = "runs" if (repo / "runs").is_symlink() else "runs/x/last.pt"
    assert subprocess.run(["git", "check-ignore", "-q", runs], cwd=repo).returncode == 0

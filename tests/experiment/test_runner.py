"""The comparison grid: config checks, planning, lambda choice, reuse and resume, the outputs.

The grid logic is driven by a fast fake trainer (a seeded `mini` model saved as a checkpoint,
optionally "interrupted" half-way), scored for real by dfkd.evaluation.evaluate on a tiny synthetic corpus.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dfkd import models
from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.errors import DfkdError
from dfkd.experiment.runner import ExperimentRunner
from dfkd.experiment.config import load_config, parse_config
from dfkd.experiment.plan import TrainJob, sweep_weights

REPO = Path(__file__).resolve().parents[2]
METRICS = ["stoi", "si_snr", "si_snri"]  # PESQ is exercised by test_evaluate; keep this fast


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from dfkd.data.demo.build import DemoSettings, build_demo_corpus

    out = tmp_path_factory.mktemp("corpus") / "demo"
    build_demo_corpus(out, DemoSettings(minutes=0.2, valid_minutes=0.05, test_minutes=0.05, synthetic=True),
                      progress=False, log=lambda _: None)
    return out


def _raw(**overrides) -> dict:
    raw = {
        "name": "unit", "architectures": ["convtasnet"], "seeds": [1, 2],
        "methods": ["none", "dfkd", {"name": "dfkd-fixed", "method": "dfkd", "adapter": "fixed:1000"}],
        "teacher": {"preset": "mini", "pretrained": "none", "steps": 4, "batch_size": 2, "seed": 0},
        "student": {"preset": "mini", "steps": 4, "batch_size": 2},
        "sweep": {"factors": [1, 3], "steps": 4, "seeds": [1]},
        "evaluation": {"metrics": METRICS, "workers": 0, "rtf_threads": 1},
        "report": {"clips": 1},
    }
    raw.update(overrides)
    return raw


class FakeTrainer:
    """Seeded random `mini` models; counts steps, and can stop a chosen run half-way once."""

    def __init__(self, interrupt: str | None = None) -> None:
        self.calls: list[TrainJob] = []
        self.interrupt = interrupt

    def __call__(self, job: TrainJob, run_dir: Path) -> None:
        self.calls.append(job)
        last = run_dir / "last.pt"
        step = torch.load(last, weights_only=True)["step"] if last.is_file() else 0
        generator_seed = int(job.key(), 16) % (2**31)
        torch.manual_seed(generator_seed)
        model = models.build(job.arch, job.preset)
        (run_dir / "steps.log").open("a").write(f"{step}\n")
        if self.interrupt and self.interrupt in run_dir.name and step == 0:
            save_checkpoint(last, {"step": job.steps // 2})
            raise KeyboardInterrupt
        save_checkpoint(last, {"step": job.steps})
        save_checkpoint(run_dir / "best.pt", model_payload(model))


def _runner(tmp_path, corpus, trainer, record: Path | None = None, **overrides) -> ExperimentRunner:
    config = parse_config(_raw(**overrides))
    return ExperimentRunner(config, tmp_path / "exp", corpus, trainer=trainer, roots=[tmp_path],
                            progress=False, device="cpu", record=record)


def test_shipped_configs_parse():
    for name in ("demo_quick", "voicebank", "dns2020", "study"):
        config = load_config(REPO / "configs" / f"{name}.yaml")
        assert {"none", "output", "sisnr", "spectral", "subband", "dfkd"} <= {v.method for v in config.variants}
        assert config.teacher.seed not in config.seeds
        adapters = {v.options.get("adapter", "cummax-slope") for v in config.variants if v.method == "dfkd"}
        assert len(adapters) == 3, f"{name}: the DFKD adapter ablation needs three rules"
        if name != "demo_quick":
            assert len(config.seeds) >= 2 and len(config.architectures) == 3
        assert min(config.sweep.factors) <= 0.3 and max(config.sweep.factors) >= 3  # method.md


def test_the_demo_is_a_small_copy_of_the_study_at_its_chosen_lambdas():
    """configs/demo.yaml (issue #10, step 6): the study's student and teacher of its one
    architecture, no sweep, each KD row at the lambda the study's committed sweep of that
    architecture chose (best mean validation SI-SNR over its candidates, `sweep.extend`'s
    included, as ExperimentRunner.choose_weights picks it), so the demo previews the study's table."""
    import re

    demo, study = (load_config(REPO / "configs" / f"{n}.yaml") for n in ("demo", "study"))
    assert len(demo.architectures) == 1 and demo.sweep.factors == (1.0,)
    (arch,) = demo.architectures
    assert demo.student.preset_for(arch) == study.student.preset_for(arch)
    assert demo.teacher.preset == study.teacher.preset
    assert demo.teacher.seed not in demo.seeds and len(demo.seeds) >= 2
    assert demo.evaluation.test_clips is None  # every test clip, as the study
    study_variants = {v.name: v for v in study.variants}
    for variant in (v for v in demo.variants if v.is_kd):
        assert variant.options == study_variants[variant.name].options, variant.name
        scores = {}
        for summary in (REPO / "records/study/runs" / arch / variant.name).glob(
                f"lam*-seed1-{study.sweep_steps}steps-*/eval-valid-*/summary.json"):
            lam = float(re.match(r"lam([^-]+)-seed", summary.parts[-3]).group(1))
            scores[lam] = json.loads(summary.read_text())["metrics"]["si_snr"]["mean"]
        assert len(scores) >= len(study.sweep.factors), f"{variant.name}: the study's sweep is not all recorded"
        assert variant.kd_weight == max(scores, key=scores.get), (variant.name, scores)


@pytest.mark.parametrize("change, message", [
    ({"seeds": [0, 1]}, "teacher seed 0 must not be a student seed"),
    ({"methods": ["sisnr"]}, "must include `none`"),
    ({"methods": ["none", "distill-all"]}, "unknown KD method"),
    ({"methods": ["none", {"method": "dfkd", "adapter": "median"}]}, "adapter"),
    ({"methods": ["none", "dfkd", "dfkd"]}, "appears twice"),
    ({"student": {"preset": "huge"}}, "unknown preset"),
    ({"student": {"preset": "mini", "presets": {"convtasnet": "huge"}}}, "unknown preset 'huge'"),
    ({"student": {"preset": "mini", "presets": {"wavenet": "nano"}}}, "`student.presets` must map"),
    ({"sweep": {"factor": [1]}}, "unknown key"),
    ({"bogus": 1}, "unknown key"),
    ({"train": {"steps": 10}}, "set by the grid"),
    ({"train": {"data": {"root": "/x"}}}, "set by the grid"),
    ({"train": {"optim": {"learning_rate": 1}}}, "train.optim.learning_rate"),
])
def test_bad_configs_are_clear_errors(change, message):
    with pytest.raises(DfkdError, match=message):
        parse_config(_raw(**change))


def test_student_presets_pick_a_preset_per_architecture(tmp_path):
    """`student.presets` gives one architecture another student; the others keep `preset`, and
    with it their run names (so a finished architecture of the study keeps its runs)."""
    from dfkd.experiment.plan import student_cell, teacher_cell

    plain = parse_config(_raw(architectures=["convtasnet", "dptnet"]))
    mixed = parse_config(_raw(architectures=["convtasnet", "dptnet"],
                              student={"preset": "mini", "presets": {"convtasnet": "nano"},
                                       "steps": 4, "batch_size": 2}))
    assert [mixed.student.preset_for(a) for a in ("convtasnet", "dptnet")] == ["nano", "mini"]
    none = next(v for v in mixed.variants if v.name == "none")

    def cell(config, arch):
        teacher = teacher_cell(config, arch, tmp_path, "/data")
        return student_cell(config, arch, none, 0.0, 1, 4, "final", teacher, tmp_path, "/data")

    assert cell(mixed, "convtasnet").job.preset == "nano"
    assert cell(mixed, "convtasnet").run_dir != cell(plain, "convtasnet").run_dir
    assert cell(mixed, "dptnet").job.preset == "mini"
    assert cell(mixed, "dptnet").run_dir == cell(plain, "dptnet").run_dir


def test_sweep_candidates_and_identity():
    config = parse_config(_raw(methods=["none", "dfkd", "sisnr"], sweep={"factors": [0.3, 1, 3]}))
    dfkd = next(v for v in config.variants if v.name == "dfkd")
    sisnr = next(v for v in config.variants if v.name == "sisnr")
    assert sweep_weights(config, dfkd) == [0.3, 1.0, 3.0]
    assert sweep_weights(config, sisnr) == [0.03, 0.1, 0.3]
    job = TrainJob("convtasnet", "mini", "dfkd", 1.0, {}, "/a/t.pt", "teacher-x", 4, 2, 1, "/data")
    moved = TrainJob("convtasnet", "mini", "dfkd", 1.0, {}, "/b/t.pt", "teacher-x", 4, 2, 1, "/data")
    longer = TrainJob("convtasnet", "mini", "dfkd", 1.0, {}, "/a/t.pt", "teacher-x", 8, 2, 1, "/data")
    assert job.key() == moved.key() != longer.key()


def test_grid_runs_reuses_and_reports(tmp_path, corpus):
    trainer = FakeTrainer()
    runner = _runner(tmp_path, corpus, trainer)
    results = runner.run()
    out = tmp_path / "exp"
    # 1 teacher + 2 KD variants x 2 lambdas x 1 sweep seed + final 3 variants x 2 seeds, minus the
    # final runs that equal a sweep run (same steps, seed 1, chosen lambda): 2 of them
    assert len(trainer.calls) == 1 + 4 + 6 - 2
    teacher_jobs = [j for j in trainer.calls if j.method is None]
    assert len(teacher_jobs) == 1 and teacher_jobs[0].seed == 0
    students = [j for j in trainer.calls if j.method is not None]
    assert {j.seed for j in students} == {1, 2}
    assert {j.steps for j in students} == {4} and {j.batch_size for j in students} == {2}
    assert all(j.teacher_id and j.teacher.endswith("best.pt") for j in students if j.method != "none")
    assert all(j.teacher is None and j.kd_weight == 0.0 for j in students if j.method == "none")

    sweeps = json.loads((out / "sweeps.json").read_text())["convtasnet"]
    assert set(sweeps) == {"dfkd", "dfkd-fixed"}
    for name, sweep in sweeps.items():
        candidates = {float(k): v for k, v in sweep["candidates"].items()}
        assert sorted(candidates) == [1.0, 3.0]
        assert sweep["chosen"] == max(candidates, key=candidates.get)
    rows = {(r.arch, r.model): r for r in results.rows}
    assert [r.model for r in results.rows] == ["noisy", "teacher", "none", "dfkd", "dfkd-fixed"]
    assert rows[("convtasnet", "dfkd")].kd_weight == sweeps["dfkd"]["chosen"]
    assert rows[("convtasnet", "none")].seeds == [1, 2]
    assert rows[("convtasnet", "teacher")].params == models.count_params(models.build("convtasnet", "mini"))
    assert rows[("convtasnet", "none")].macs > 0 and rows[("convtasnet", "none")].rtf > 0
    md = (out / "results.md").read_text()
    assert "teacher leads `none` by" in md and "student seeds 1, 2, teacher seed(s) 0" in md
    data = json.loads((out / "results.json").read_text())
    assert set(data["paired_vs_none"]["convtasnet"]) == {"teacher", "dfkd", "dfkd-fixed"}
    for name in ("report.html", "plots/deltas.png", "plots/crossover.png", "results.csv"):
        assert (out / name).is_file(), name
    crossover = json.loads((out / "crossover.json").read_text())
    rules = next(iter(crossover.values()))
    assert set(rules) == {"cummax-slope", "fixed:1000"}
    assert sum(rules["fixed:1000"]) > 0 and rules["fixed:1000"].index(max(rules["fixed:1000"])) == 32
    html = (out / "report.html").read_text()
    # one clip: noisy, clean, teacher, none, dfkd, and the best student when it is another one
    best = next(r.model for r in results.rows if r.best)
    assert html.count("<audio") == 5 + (best not in ("none", "dfkd"))
    assert (f"student {best} (best)" in html) == (best not in ("none", "dfkd"))
    for wav in (out / "audio").rglob("*.wav"):
        assert wav.stat().st_size > 1000

    # restarted: nothing is trained or scored again, and the same table comes out
    again = FakeTrainer()
    runner2 = _runner(tmp_path, corpus, again)
    results2 = runner2.run()
    assert again.calls == [] and runner2.counts["scored"] == 0 and runner2.counts["reused"] == 11
    assert results2.to_dict()["rows"] == results.to_dict()["rows"]

    # more student steps is another experiment: no student run is done, the teacher still is
    plan = _runner(tmp_path, corpus, FakeTrainer(),
                   student={"preset": "mini", "steps": 5, "batch_size": 2}, sweep={"factors": [1, 3]}).plan()
    assert runner2.is_scored(plan["convtasnet"]["teacher"])
    assert not any(runner2.is_trained(c) for c in plan["convtasnet"]["sweep"] + plan["convtasnet"]["final"])


def test_heldout_corpus_scores_teacher_and_finals_beside_the_test_split(tmp_path, corpus):
    # the demo corpus itself as the "held-out" one: the same clips must give the same scores
    evaluation = {"metrics": METRICS, "workers": 0, "rtf_threads": 1, "complexity": False,
                  "heldout": str(corpus)}
    trainer = FakeTrainer()
    runner = _runner(tmp_path, corpus, trainer, methods=["none"], evaluation=evaluation)
    runner.run()
    out = tmp_path / "exp"
    held = json.loads((out / "heldout" / "results.json").read_text())
    test = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in held["rows"]] == [r["model"] for r in test["rows"]]
    assert held["rows"] == test["rows"]
    finals = list((out / "runs" / "convtasnet" / "none").glob("*/eval-heldout-*/done.json"))
    assert len(finals) == 2  # both seeds; the teacher's too:
    assert list((out / "runs" / "convtasnet").glob("teacher-*/eval-heldout-*/done.json"))
    # a second run scores nothing again
    again = _runner(tmp_path, corpus, FakeTrainer(), methods=["none"], evaluation=evaluation)
    again.run()
    assert again.counts["scored"] == 0
    with pytest.raises(DfkdError, match="held-out corpus folder not found"):
        _runner(tmp_path, corpus, FakeTrainer(), methods=["none"],
                evaluation={**evaluation, "heldout": str(tmp_path / "nowhere")})


def test_interrupted_run_resumes_without_redoing_work(tmp_path, corpus):
    raw = {"methods": ["none"], "report": {"clips": 0},
           "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0, "complexity": False}}
    first = FakeTrainer(interrupt="seed1")  # the first `none` run is cut half-way
    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path, corpus, first, **raw).run()
    cut = next((tmp_path / "exp" / "runs" / "convtasnet" / "none").glob("*seed1*"))
    assert not (cut / "trained.json").exists()

    second = FakeTrainer()
    _runner(tmp_path, corpus, second, **raw).run()
    # only the cut run (resumed from its half-way checkpoint) and the run never started are trained
    assert sorted((j.method, j.seed) for j in second.calls) == [("none", 1), ("none", 2)]
    assert (cut / "steps.log").read_text().split() == ["0", "2"]


def test_a_run_with_a_clip_that_could_not_be_scored_stays_unscored(tmp_path, corpus, monkeypatch):
    import dfkd.evaluation.evaluate as evaluate

    real = evaluate.evaluate_model

    def one_clip_fails(*args, **kwargs):  # e.g. a scorer that ran past its per-clip timeout
        summary = real(*args, **kwargs)
        summary.failed.append(("clip7.wav", "scoring took longer than 600 s; worker stopped"))
        return summary

    raw = {"methods": ["none"], "seeds": [1], "report": {"clips": 0},
           "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0, "complexity": False}}
    monkeypatch.setattr(evaluate, "evaluate_model", one_clip_fails)
    with pytest.raises(DfkdError, match=r"1 test clip\(s\) could not be scored \(first: clip7.wav: "
                                        r"scoring took longer than 600 s.*stays unscored"):
        _runner(tmp_path, corpus, FakeTrainer(), **raw).run()
    assert not list((tmp_path / "exp").rglob("done.json"))  # the teacher, scored first, failed
    monkeypatch.setattr(evaluate, "evaluate_model", real)
    again = FakeTrainer()
    results = _runner(tmp_path, corpus, again, **raw).run()
    # the teacher is scored again from its weights, not trained again; `none` had not started
    assert [j.method for j in again.calls] == ["none"]
    assert {r.model for r in results.rows} == {"noisy", "teacher", "none"}


def test_pretrained_teacher_is_used_instead_of_training(tmp_path, corpus):
    torch.manual_seed(0)
    (tmp_path / "pretrained").mkdir()
    save_checkpoint(tmp_path / "pretrained" / "convtasnet_mini.pt",
                    model_payload(models.build("convtasnet", "mini")))
    trainer = FakeTrainer()
    raw = {"methods": ["none", "output"], "seeds": [1], "sweep": {"factors": [1], "steps": 4},
           "teacher": {"preset": "mini", "pretrained": "auto", "seed": 0}, "report": {"clips": 0},
           "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0, "complexity": False}}
    results = _runner(tmp_path, corpus, trainer, **raw).run()
    assert all(j.method is not None for j in trainer.calls)  # no teacher training
    assert {j.teacher for j in trainer.calls if j.method == "output"} == {
        str((tmp_path / "pretrained" / "convtasnet_mini.pt").resolve())}
    assert "pretrained teachers for convtasnet" in results.provenance


def test_report_only_and_missing_data(tmp_path, corpus):
    with pytest.raises(DfkdError, match="corpus folder not found"):
        _runner(tmp_path, tmp_path / "nowhere", FakeTrainer())
    with pytest.raises(DfkdError, match="no evaluated runs"):
        _runner(tmp_path, corpus, FakeTrainer()).run(report_only=True)


def test_a_second_grid_in_a_running_grids_folder_is_refused_and_a_report_is_not(tmp_path, corpus):
    import os

    from dfkd.files import folder_lock

    raw = {"methods": ["none"], "seeds": [1], "report": {"clips": 0}}
    _runner(tmp_path, corpus, FakeTrainer(), **raw).run()
    trainer = FakeTrainer()
    with folder_lock(tmp_path / "exp", "another `dfkd experiment`"):  # the grid that runs there
        with pytest.raises(DfkdError, match=rf"exp: another `dfkd experiment` \(pid {os.getpid()}\) "
                                            "is already running in this folder"):
            _runner(tmp_path, corpus, trainer, **raw).run()
        assert _runner(tmp_path, corpus, trainer, **raw).run(report_only=True) is not None
    assert trainer.calls == []


def test_command_dry_run(tmp_path, corpus, capsys):
    from dfkd import cli

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_raw()))
    code = cli.main(["experiment", "--config", str(path), "--data", str(corpus),
                     "--out", str(tmp_path / "exp"), "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert "convtasnet: teacher trained in the grid" in out
    assert "4 sweep runs, 0 done" in out and "6 final runs, 0 done" in out


def test_study_config_is_the_converged_grid():
    config = load_config(REPO / "configs" / "study.yaml")
    assert config.student.preset == "micro" and len(config.seeds) >= 3
    assert config.evaluation.test_clips is None  # every test clip
    assert config.student.steps > config.sweep_steps
    scaled = {v.method for v in config.variants if v.options.get("scale_fix")}
    assert scaled == {"spectral", "dfkd"}


def test_command_arch_restricts_the_grid(tmp_path, corpus, capsys):
    from dfkd import cli

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_raw(architectures=["convtasnet", "dptnet"])))
    args = ["experiment", "--config", str(path), "--data", str(corpus), "--out", str(tmp_path / "exp")]
    assert cli.main(args + ["--dry-run", "--arch", "dptnet"]) == 0
    out = capsys.readouterr().out
    assert "dptnet: 4 sweep runs" in out and "convtasnet" not in out
    assert cli.main(args + ["--dry-run", "--arch", "dccrn"]) == 1
    assert "--arch 'dccrn': choose among the config's architectures (convtasnet, dptnet)" in \
        capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def test_grid_with_the_real_trainer(tmp_path, corpus):
    """The default trainer (dfkd.training.run) runs a grid cell end to end and resumes a cut run."""
    train = {"data": {"segment_seconds": 0.5, "valid_segment_seconds": 0.5, "valid_clips": 2,
                      "pesq_clips": 0}, "valid_every": 2, "checkpoint_every": 1, "threads": 1}
    raw = {"methods": ["none", "dfkd"], "seeds": [1], "sweep": {"factors": [1], "steps": 2},
           "teacher": {"preset": "mini", "pretrained": "none", "steps": 2, "batch_size": 2, "seed": 0},
           "student": {"preset": "mini", "steps": 2, "batch_size": 2}, "train": train,
           "report": {"clips": 0}, "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0,
                                                  "complexity": False}}
    config = parse_config(_raw(**raw))
    runner = ExperimentRunner(config, tmp_path / "exp", corpus, roots=[tmp_path], progress=False,
                              device="cpu")
    results = runner.run()
    assert [r.model for r in results.rows] == ["noisy", "teacher", "none", "dfkd"]
    dfkd_run = next((tmp_path / "exp" / "runs" / "convtasnet" / "dfkd").iterdir())
    history = json.loads((dfkd_run / "history.json").read_text())
    assert history["run"]["method"] == "dfkd" and history["run"]["seed"] == 1
    assert history["run"]["teacher_seed"] == 0
    # the crossover histogram comes from the dfkd runs' own validation logs (nothing recomputed)
    assert (tmp_path / "exp" / "plots" / "crossover.png").is_file()
    assert not (tmp_path / "exp" / "crossover.json").exists()
    # a run cut after its last checkpoint (no trained.json) is resumed, not restarted or refused
    (dfkd_run / "trained.json").unlink()
    for path in dfkd_run.glob("eval-*"):
        shutil.rmtree(path)
    again = ExperimentRunner(config, tmp_path / "exp", corpus, roots=[tmp_path], progress=False,
                             device="cpu")
    again.run()
    # the same run is the sweep cell (validation) and the final cell (test): two scorings
    assert again.counts["trained"] == 1 and again.counts["scored"] == 2


def test_parallel_runs_train_in_worker_processes(tmp_path, corpus):
    raw = {"methods": ["none"], "parallel_runs": 2, "report": {"clips": 0},
           "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0, "complexity": False}}
    runner = _runner(tmp_path, corpus, FakeTrainer(), **raw)
    if runner.parallel_runs < 2:
        pytest.skip("one usable core: no parallel runs")
    runner.run()
    assert runner.counts == {"trained": 3, "reused": 0, "scored": 3}
    runs = sorted((tmp_path / "exp" / "runs" / "convtasnet" / "none").iterdir())
    assert [r.name.split("-")[1] for r in runs] == ["seed1", "seed2"]
    for run in runs:
        trained = json.loads((run / "trained.json").read_text())
        assert trained["job"]["seed"] == int(run.name.split("-")[1][4:])
        assert any(p.name == "done.json" for p in run.glob("eval-test-*/done.json"))
    # resumed serially: everything is reused
    again = _runner(tmp_path, corpus, FakeTrainer(), **{**raw, "parallel_runs": 1})
    again.run()
    assert again.counts == {"trained": 0, "reused": 3, "scored": 0}


def test_sweep_score_from_history_when_validation_is_mixed_on_the_fly(tmp_path, corpus):
    runner = _runner(tmp_path, corpus, FakeTrainer())
    cell = next(c for c in runner.plan()["convtasnet"]["sweep"])
    cell.run_dir.mkdir(parents=True)
    history = {"valid": [{"step": 2, "si_snr": 1.5}, {"step": 4, "si_snr": 2.5}, {"step": 6, "si_snr": 2.0}]}
    (cell.run_dir / "history.json").write_text(json.dumps(history))
    runner.has_valid_files = lambda: False  # as for a DNS Challenge root
    runner.ensure_scored(cell)
    summary = json.loads((cell.eval_dir / "summary.json").read_text())
    assert summary["metrics"]["si_snr"]["mean"] == 2.5  # the best.pt validation score
    chosen, record = runner.choose_weights("convtasnet", [cell], partial=True)
    assert record[cell.model]["candidates"] == {cell.kd_weight: 2.5}
    assert record[cell.model]["grad_ratio"] == {}  # the history logged no gradient ratio

    # the KD share of the gradient the trainer logged, over the second half of the run: median
    history["train"] = [{"step": 1, "grad_ratio": 9.0}, {"step": 2, "grad_ratio": 9.0},
                        {"step": 4, "grad_ratio": 0.1}, {"step": 5, "task": 1.0},
                        {"step": 6, "grad_ratio": 0.3}, {"step": 8, "grad_ratio": 0.2}]
    (cell.run_dir / "history.json").write_text(json.dumps(history))
    _, record = runner.choose_weights("convtasnet", [cell], partial=True)
    assert record[cell.model]["grad_ratio"] == {cell.kd_weight: pytest.approx(0.25)}  # steps 6, 8


@pytest.mark.parametrize("arch, preset", [("convtasnet", "mini-causal"), ("dptnet", "micro-causal"),
                                          ("dccrn", "micro-causal")])
def test_a_causal_student_distils_in_the_grid_from_a_non_causal_teacher(tmp_path, corpus, arch, preset):
    """Issue #12, step 3: the study's causal row group (configs/study_causal.yaml) in miniature.
    The teacher sees whole utterances (non-causal, its outputs cached), the student only the past;
    the KD method runs unchanged, and the distilled student streams hop by hop equal to its
    offline forward."""
    from dfkd.checkpoint import load_model
    from dfkd.deploy.stream import Streamer

    train = {"data": {"segment_seconds": 0.5, "valid_segment_seconds": 0.5, "valid_clips": 2,
                      "pesq_clips": 0}, "valid_every": 2, "checkpoint_every": 2, "threads": 1,
             "kd": {"cache_teacher": True}}
    raw = {"architectures": [arch], "methods": ["none", "dfkd"], "seeds": [1],
           "sweep": {"factors": [1], "steps": 2},
           "teacher": {"preset": "mini", "pretrained": "none", "steps": 2, "batch_size": 2, "seed": 0},
           "student": {"preset": preset, "steps": 2, "batch_size": 2}, "train": train,
           "report": {"clips": 0}, "evaluation": {"metrics": ["si_snr", "si_snri"], "workers": 0,
                                                  "complexity": False}}
    runner = ExperimentRunner(parse_config(_raw(**raw)), tmp_path / "exp", corpus, roots=[tmp_path],
                              progress=False, device="cpu")
    results = runner.run()
    assert [r.model for r in results.rows] == ["noisy", "teacher", "none", "dfkd"]
    runs = tmp_path / "exp" / "runs" / arch
    teacher_run = next(runs.glob("teacher-*"))
    assert not load_model(teacher_run).config.get("causal")
    student_run = next((runs / "dfkd").iterdir())
    history = json.loads((student_run / "history.json").read_text())
    assert history["run"]["method"] == "dfkd" and np.isfinite(history["valid"][-1]["si_snr"])
    student = load_model(student_run)
    assert student.config.get("causal") is True
    signal = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0)).numpy()[0] * 0.1
    with torch.no_grad():
        offline = student(torch.from_numpy(signal)[None])[0].numpy()
    streamed = Streamer(student).process(signal)
    assert streamed.shape == offline.shape
    assert np.abs(streamed - offline).max() <= 1e-5


def test_the_causal_study_is_the_study_with_causal_students():
    study, causal = (load_config(REPO / "configs" / f"{n}.yaml") for n in ("study", "study_causal"))
    assert causal.student.preset == "micro-causal" and causal.teacher == study.teacher
    assert set(causal.architectures) == set(study.architectures)
    assert (causal.variants, causal.seeds, causal.sweep) == (study.variants, study.seeds, study.sweep)
    assert (causal.student.steps, causal.train_options, causal.evaluation) == \
        (study.student.steps, study.train_options, study.evaluation)
    for arch in causal.architectures:  # every architecture has the causal twin of the student
        assert models.build(arch, causal.student.preset).config.get("causal") is True


def test_the_lambda_check_is_the_study_s_conv_tasnet_finals_at_other_lambdas(tmp_path, corpus):
    study, check = (load_config(REPO / "configs" / f"{n}.yaml")
                    for n in ("study", "study_lambda_check"))
    assert list(check.architectures) == ["convtasnet"] and check.seeds == study.seeds
    assert (check.teacher, check.student.steps, check.student.batch_size) == \
        (study.teacher, study.student.steps, study.student.batch_size)
    assert (check.train_options, check.evaluation) == (study.train_options, study.evaluation)
    assert check.student.preset_for("convtasnet") == study.student.preset_for("convtasnet") == "nano"
    # each KD row at 3x its default lambda (the study chose 30x), one point, no extension
    from dfkd.distill.methods import default_kd_weight

    kd = [v for v in check.variants if v.is_kd]
    assert [v.kd_weight / default_kd_weight(v.method, v.options) for v in kd] == pytest.approx([3, 3])
    assert {v.name: v.options for v in kd} == {v.name: v.options for v in study.variants if v.name
                                               in {k.name for k in kd}}
    assert list(check.sweep.factors) == [1] and not check.sweep.extend
    # its `none` runs and teacher are the study's own (the same run names): nothing trained twice
    plans = [ExperimentRunner(c, tmp_path / "exp", corpus, roots=[REPO], progress=False,
                              device="cpu", defer_test_scores=True).plan()["convtasnet"]
             for c in (study, check)]
    untuned = [{str(c.run_dir) for c in p["final"] if c.model == "none"} for p in plans]
    assert untuned[0] == untuned[1] and len(untuned[0]) == 3
    assert plans[0]["teacher"].run_dir == plans[1]["teacher"].run_dir

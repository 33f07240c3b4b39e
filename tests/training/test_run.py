"""Training and distillation: config, run folder, logs, teacher cache, clear errors."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from dfkd.checkpoint import load_model, read_checkpoint
from dfkd.errors import DfkdError
from dfkd.experiment.jobs import train_job as run_experiment_job
from dfkd.training.run import kd_loss_from_config, run_training
from dfkd.training.config import (
    KD_OPTION_KEYS,
    TrainConfig,
    all_keys,
    apply_mapping,
    from_dict,
    load_yaml,
    parse_assignment,
    set_key,
    to_dict,
)
from dfkd.training.batches import EpochBatchSampler, evenly_spaced
from dfkd.training.trainer import lr_factor

from cli_runs import fast_flags, run_cli
from tiny_corpus import make_tiny_corpus

REPO = Path(__file__).resolve().parents[2]

# Fast settings shared by every run of this file (mini model, 1 s crops, tiny validation).
FAST = [*fast_flags(pesq_clips=1), "--set", "log_every=2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def teacher_run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "teacher"
    code = run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", out, "--steps", 4,
                 "--valid-every", 2, "--seed", 0, *FAST)
    assert code == 0
    return out


# ----------------------------------------------------------------------------- config


def test_configs_train_yaml_is_the_defaults_and_every_key_is_commented():
    path = REPO / "configs" / "train.yaml"
    assert to_dict(from_dict(load_yaml(path))) == to_dict(TrainConfig())
    for line in path.read_text().splitlines():
        if re.match(r"^\s*[a-z_]+:", line) and not re.match(r"^[a-z]+:\s*$", line):
            assert "#" in line, f"uncommented key in configs/train.yaml: {line!r}"


def test_configs_distill_yaml_loads():
    config = TrainConfig()
    apply_mapping(config, load_yaml(REPO / "configs" / "distill.yaml"), "distill.yaml")
    assert config.kd.method == "dfkd" and config.model.preset == "tiny" and config.kd.cache_teacher


def test_set_key_types_and_unknown_keys():
    config = TrainConfig()
    set_key(config, *parse_assignment("optim.lr=3e-4"))
    set_key(config, *parse_assignment("steps=12"))
    set_key(config, *parse_assignment("kd.weight=2"))
    set_key(config, *parse_assignment("model.overrides.n_blocks=2"))
    assert config.optim.lr == 3e-4 and config.steps == 12 and config.kd.weight == 2.0
    assert config.model.overrides == {"n_blocks": 2}
    with pytest.raises(DfkdError, match="'optim.lrr' does not exist"):
        set_key(config, "optim.lrr", 1)
    with pytest.raises(DfkdError, match="expected an integer"):
        set_key(config, "steps", 1.5)
    with pytest.raises(DfkdError, match="expected true or false"):
        set_key(config, "progress", "maybe")
    assert "kd.adapter" in all_keys()


def test_unknown_key_in_a_config_file_is_a_clear_error(tmp_path, corpus, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    code = run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", tmp_path / "run",
                 "--config", bad, *FAST)
    assert code == 1
    assert "'optim.learning_rate' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_kd_loss_from_config_maps_options():
    config = TrainConfig()
    config.kd.method, config.kd.adapter, config.kd.beta = "dfkd", "fixed:1000", 0.25
    loss = kd_loss_from_config(config)
    assert loss.options()["adapter"] == "fixed:1000" and loss.beta == 0.25 and loss.weight == 1.0
    config.kd.method, config.kd.subband_bands = "subband", 3
    assert kd_loss_from_config(config).bands == 3


# ----------------------------------------------------------------------------- data order


def test_epoch_batches_are_a_function_of_seed_and_epoch_and_ranks_partition_them():
    full = list(EpochBatchSampler(10, 4, seed=3, epoch=1))
    assert len(full) == 2 and all(len(b) == 4 for b in full)
    assert full == list(EpochBatchSampler(10, 4, seed=3, epoch=1))
    assert full != list(EpochBatchSampler(10, 4, seed=3, epoch=2))
    assert list(EpochBatchSampler(10, 4, seed=3, epoch=1, start_batch=1)) == full[1:]
    shares = [list(EpochBatchSampler(10, 4, 3, 1, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*shares)] == full


def test_evenly_spaced_and_lr_schedule():
    assert evenly_spaced(10, 3) == [0, 4, 9] or evenly_spaced(10, 3) == [0, 5, 9]
    assert evenly_spaced(2, 5) == [0, 1]
    optim = TrainConfig().optim
    optim.warmup_steps = 2
    factor = lr_factor(optim, total_steps=12)
    assert factor(0) == pytest.approx(0.5) and factor(1) == pytest.approx(1.0)
    assert factor(2) == pytest.approx(1.0)
    assert factor(12) == pytest.approx(optim.min_lr_ratio)


# ----------------------------------------------------------------------------- runs


def test_teacher_run_folder(teacher_run):
    for name in ("config.yaml", "last.pt", "best.pt", "history.json"):
        assert (teacher_run / name).is_file(), name
    assert list((teacher_run / "tb").glob("events.out.tfevents.*"))
    history = json.loads((teacher_run / "history.json").read_text())
    assert [r["step"] for r in history["train"]] == [2, 4]
    assert {"task", "loss", "grad_norm", "lr", "seconds_per_step"} <= set(history["train"][0])
    assert [r["step"] for r in history["valid"]] == [2, 4]
    assert {"si_snr", "si_snri", "pesq_wb"} <= set(history["valid"][0])
    last = read_checkpoint(teacher_run / "last.pt")
    assert last["step"] == 4 and last["train_seed"] == 0
    assert {"optimizer", "scheduler", "rng"} <= set(last)
    model = load_model(teacher_run)
    assert model.ARCH == "convtasnet" and model.config["n_blocks"] == 3
    saved = yaml.safe_load((teacher_run / "config.yaml").read_text())
    assert saved["steps"] == 4 and saved["model"]["preset"] == "mini"


def test_distill_dfkd_logs_bands_ratio_and_crossover(teacher_run, corpus, tmp_path):
    out = tmp_path / "dfkd"
    code = run_cli("distill", "--teacher", teacher_run, "--method", "dfkd", "--data", corpus,
                 "--out", out, "--steps", 2, "--valid-every", 2, "--set", "grad_ratio_every=1",
                 "--adapter", "energy-rolloff:0.9", "--beta", 0.4, *FAST)
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    record = history["train"][0]
    for key in ("task", "kd", "kd_low", "kd_high", "grad_ratio", "grad_ratio_per_lambda",
                "crossover_median_hz", "crossover_p90_hz"):
        assert key in record, key
    assert record["grad_ratio"] > 0
    valid = history["valid"][0]
    assert sum(valid["crossover_counts"]) > 0 and "kd" in valid
    run = history["run"]
    assert run["method"] == "dfkd" and run["kd_options"]["adapter"] == "energy-rolloff:0.9"
    assert run["kd_options"]["beta"] == 0.4
    assert run["seed"] == 1 and run["teacher_seed"] == 0  # default: the teacher's seed + 1


def _cache_files(corpus: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (corpus / ".dfkd_teacher_cache").rglob("*.npy")}


def test_teacher_cache_is_filled_once_and_reused_across_methods(teacher_run, corpus, tmp_path):
    common = ["--teacher", teacher_run, "--data", corpus, "--steps", 1, "--valid-every", 5,
              "--cache-teacher", *FAST]
    assert run_cli("distill", "--method", "spectral", "--out", tmp_path / "a", *common) == 0
    files = _cache_files(corpus)
    assert len(files) == 8  # one whole-utterance output per training clip
    assert run_cli("distill", "--method", "output", "--out", tmp_path / "b", *common) == 0
    assert _cache_files(corpus) == files  # nothing recomputed


def test_cached_teacher_crop_is_the_whole_utterance_output(teacher_run, corpus, tmp_path):
    from dfkd.data.datasets import training_dataset
    from dfkd.distill.teacher_cache import CachedTeacherDataset, TeacherCache, model_fingerprint

    teacher = load_model(teacher_run)
    train = training_dataset(corpus, "train", 0.5, seed=4)
    cache = TeacherCache(tmp_path, model_fingerprint(teacher), 16000)
    assert cache.fill(teacher, train.pairs, torch.device("cpu"), progress=False) == 8
    dataset = CachedTeacherDataset(train, cache)
    dataset.set_epoch(2)
    noisy, _, cached = dataset[3]
    start = train.crop_offset(3)
    import soundfile as sf

    whole, _ = sf.read(train.pairs[3].noisy, dtype="float32")
    assert torch.equal(noisy, torch.from_numpy(whole[start : start + len(noisy)]))
    with torch.no_grad():
        expected = teacher(torch.from_numpy(whole)[None])[0, start : start + len(noisy)]
    torch.testing.assert_close(cached, expected, rtol=1e-5, atol=1e-6)


def test_on_the_fly_mixtures_are_not_cached(tmp_path):
    from dfkd.data.datasets import DNSMixtureDataset, training_dataset
    from dfkd.distill.teacher_cache import supports_cache

    mixtures = DNSMixtureDataset([tmp_path / "c.wav"], [tmp_path / "n.wav"], segment_seconds=1.0)
    assert not supports_cache(mixtures)  # the teacher then runs inline on every batch
    assert supports_cache(training_dataset(make_tiny_corpus(tmp_path / "c", 2, 1), "train", 1.0))


def test_distill_from_an_asteroid_checkpoint(asteroid_dir, corpus, tmp_path):
    fixture = torch.load(asteroid_dir / "convtasnet_small.pt", map_location="cpu", weights_only=True)
    teacher = tmp_path / "asteroid.pt"
    torch.save({k: fixture[k] for k in ("model_class", "model_args", "state_dict")}, teacher)
    code = run_cli("distill", "--teacher", teacher, "--method", "sisnr", "--data", corpus,
                 "--out", tmp_path / "s", "--steps", 1, "--seed", 0, *FAST)
    assert code == 0
    assert json.loads((tmp_path / "s" / "history.json").read_text())["run"]["teacher_seed"] is None


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "case,match",
    [
        ("seed", "student seed 0 equals the teacher's seed"),
        ("missing", "nope.pt: teacher not found"),
        ("corrupt", "not a readable checkpoint"),
        ("notacheckpoint", "neither a dfkd checkpoint nor an asteroid checkpoint"),
        ("method", "unknown KD method 'logits'"),
    ],
)
def test_bad_teacher_input_fails_before_training(case, match, teacher_run, corpus, tmp_path, capsys):
    teacher, extra = teacher_run, []
    if case == "seed":
        extra = ["--seed", "0"]
    elif case == "missing":
        teacher = tmp_path / "nope.pt"
    elif case == "corrupt":
        teacher = tmp_path / "corrupt.pt"
        teacher.write_bytes((teacher_run / "best.pt").read_bytes()[:1000])
    elif case == "notacheckpoint":
        teacher = tmp_path / "dict.pt"
        torch.save({"weights": torch.zeros(3)}, teacher)
    elif case == "method":
        extra = ["--method", "logits"]
    out = tmp_path / "student"
    try:
        code = run_cli("distill", "--teacher", teacher, "--data", corpus, "--out", out,
                     "--steps", 1, *extra, *FAST)
    except SystemExit as exit_:  # argparse rejects a bad choice itself
        code = exit_.code
    assert code in (1, 2)
    assert match in capsys.readouterr().err
    assert not (out / "last.pt").exists()


def test_existing_run_and_resume_mismatch_are_errors(teacher_run, corpus, capsys):
    args = ["train", "--arch", "convtasnet", "--data", corpus, "--out", teacher_run, *FAST]
    assert run_cli(*args, "--steps", 4) == 1
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert run_cli(*args, "--steps", 4, "--resume", "--lr", 0.5) == 1
    assert "optim.lr differ" in capsys.readouterr().err
    # nothing left to do: resuming a finished run is a no-op
    assert run_cli("train", "--out", teacher_run, "--resume", "--no-progress") == 0


def test_sample_rate_mismatches_fail_before_training(teacher_run, corpus, tmp_path, monkeypatch,
                                                   capsys):
    import dfkd.training.run

    args = ["distill", "--teacher", teacher_run, "--data", corpus, "--steps", 1, *FAST]
    assert run_cli(*args, "--out", tmp_path / "a", "--set", "data.sample_rate=8000") == 1
    assert "works at 16000 Hz but data.sample_rate is 8000" in capsys.readouterr().err
    load = dfkd.training.run.load_teacher

    def narrowband_teacher(spec, sample_rate):
        source = load(spec, sample_rate)
        source.model.sample_rate = 8000
        return source

    monkeypatch.setattr(dfkd.training.run, "load_teacher", narrowband_teacher)
    assert run_cli(*args, "--out", tmp_path / "b") == 1
    assert "the teacher works at 8000 Hz and the student at 16000 Hz" in capsys.readouterr().err
    assert not (tmp_path / "b" / "last.pt").exists()


def test_missing_data_and_missing_teacher(tmp_path, capsys):
    assert run_cli("train", "--arch", "convtasnet", "--out", tmp_path / "r", *FAST) == 1
    assert "no training data" in capsys.readouterr().err
    assert run_cli("distill", "--data", tmp_path, "--out", tmp_path / "r", *FAST) == 1
    assert "needs --teacher" in capsys.readouterr().err


def test_run_experiment_job(teacher_run, corpus, tmp_path):
    job = SimpleNamespace(
        arch="convtasnet", preset="mini", method="dfkd", kd_weight=0.5,
        kd_options={"adapter": "fixed:500"}, teacher=str(teacher_run), teacher_id="t",
        steps=1, batch_size=4, seed=7, data=str(corpus),
        options={"threads": 1, "progress": False, "data.segment_seconds": 1.0,
                 "data": {"valid_segment_seconds": 1.25, "pesq_clips": 0}},
    )
    out = run_experiment_job(job, tmp_path / "cell")
    run = json.loads((out / "history.json").read_text())["run"]
    assert run["kd_weight"] == 0.5 and run["kd_options"]["adapter"] == "fixed:500"
    assert (out / "last.pt").is_file()
    # a second call finds the finished run and resumes it as a no-op
    assert run_experiment_job(job, tmp_path / "cell") == out


def test_config_roundtrip_of_a_run(teacher_run):
    config = from_dict(load_yaml(teacher_run / "config.yaml"))
    assert config.steps == 4 and config.model.arch == "convtasnet"
    assert np.isclose(config.optim.lr, 1e-3)
    with pytest.raises(DfkdError, match="does not exist"):
        run_training(from_dict({"steps": 1, "bogus": 2}), teacher_run)


def test_init_starts_from_a_checkpoints_weights_with_a_fresh_schedule(teacher_run, corpus, tmp_path,
                                                                    capsys):
    """`--init` (fine-tuning): step 0 holds the source weights; optimiser and step count restart."""
    from dfkd.training.run import init_weights
    from dfkd import models

    source = load_model(teacher_run)
    fresh = models.build("convtasnet", "mini")
    assert init_weights(fresh, teacher_run)["init_from"].endswith("best.pt")
    for name, tensor in source.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name

    out = tmp_path / "finetune"
    code = run_cli("train", "--arch", "convtasnet", "--data", corpus, "--out", out, "--steps", 2,
                 "--valid-every", 2, "--init", teacher_run / "last.pt", "--lr", 1e-4, *FAST)
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert history["run"]["init_from"] == str(teacher_run / "last.pt")
    assert read_checkpoint(out / "last.pt")["step"] == 2  # counted from 0, not from the source's 4
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["init"] == str(teacher_run / "last.pt")

    # a checkpoint of another architecture or preset is refused before anything is written
    other = tmp_path / "other"
    assert run_cli("train", "--arch", "convtasnet", "--preset", "tiny", "--data", corpus, "--out", other,
                 "--steps", 1, "--init", teacher_run, *FAST[2:]) == 1
    assert "--init weights do not fit this convtasnet preset" in capsys.readouterr().err
    assert not other.exists()
    assert run_cli("train", "--arch", "dptnet", "--data", corpus, "--out", other, "--steps", 1,
                 "--init", teacher_run, *FAST) == 1
    assert "--init holds a convtasnet, but this run trains a dptnet" in capsys.readouterr().err


def test_every_kd_option_is_a_config_key_a_grid_key_and_a_distill_flag():
    from dfkd.commands.distill import add_arguments
    from dfkd.distill.methods import BUILTIN_METHODS, kd_options
    from dfkd.experiment.config import GRID_KEYS

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {action.dest for action in parser._actions}
    config = TrainConfig()
    for method in BUILTIN_METHODS:
        for option in kd_options(method):
            assert getattr(config.kd, option.key) == option.default, (method, option)
            assert f"kd.{option.key}" in GRID_KEYS and option.key in dests and option.help
    assert KD_OPTION_KEYS["output"]["output_norm"] == "norm"
    assert KD_OPTION_KEYS["dispatch"]["dispatch_top_k"] == "top_k"


def test_distill_dispatch_and_option_flags_reach_the_loss(teacher_run, corpus, tmp_path):
    out = tmp_path / "dispatch"
    code = run_cli("distill", "--teacher", teacher_run, "--method", "dispatch", "--data", corpus,
                 "--out", out, "--steps", 2, "--valid-every", 2, "--dispatch-base", "dfkd",
                 "--dispatch-patch-bins", "20", "--dispatch-top-k", 0.5, "--no-polarity-fix", *FAST)
    assert code == 0
    run = json.loads((out / "history.json").read_text())["run"]
    assert run["kd_options"]["base"] == "dfkd" and run["kd_options"]["top_k"] == 0.5
    assert run["kd_options"]["patch_bins"] == "20" and run["kd_options"]["polarity_fix"] is False
    assert run["kd_weight"] == 1.0  # the dfkd base's lambda
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["kd"]["dispatch_base"] == "dfkd"


def test_distill_output_norm_flag_and_a_plugin_method(teacher_run, corpus, tmp_path, monkeypatch, capsys):
    out = tmp_path / "output"
    assert run_cli("distill", "--teacher", teacher_run, "--method", "output", "--output-norm", "mse",
                 "--data", corpus, "--out", out, "--steps", 1, "--valid-every", 5, *FAST) == 0
    assert json.loads((out / "history.json").read_text())["run"]["kd_options"]["norm"] == "mse"
    (tmp_path / "my_kd_plugin.py").write_text(
        "from dfkd import KDLoss, KDOutput, register_kd_loss\n"
        "@register_kd_loss\n"
        "class MeanKD(KDLoss):\n"
        "    name = 'plugin-mean'\n"
        "    def compute(self, student, teacher, clean):\n"
        "        return KDOutput((student - teacher).abs().mean(), {})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "plugin"
    assert run_cli("distill", "--teacher", teacher_run, "--method", "plugin-mean", "--plugin", "my_kd_plugin",
                 "--data", corpus, "--out", out, "--steps", 1, "--valid-every", 5, *FAST) == 0
    assert json.loads((out / "history.json").read_text())["run"]["method"] == "plugin-mean"
    assert run_cli("distill", "--teacher", teacher_run, "--method", "nope", "--data", corpus,
                 "--out", tmp_path / "x", *FAST) == 1
    assert "unknown KD method 'nope'" in capsys.readouterr().err


def test_experiment_cells_of_the_new_methods_train(teacher_run, corpus, tmp_path):
    """A grid row's option names reach the trainer for dispatch and dfkd's cosine_bins."""
    for method, options in (("dispatch", {"base": "dfkd", "patch_bins": "20", "top_k": 0.5}),
                            ("dfkd", {"cosine_bins": "10/40", "adapter": "cummax-slope:100"})):
        job = SimpleNamespace(
            arch="convtasnet", preset="mini", method=method, kd_weight=0.5, kd_options=dict(options),
            teacher=str(teacher_run), teacher_id="t", steps=1, batch_size=4, seed=7, data=str(corpus),
            options={"threads": 1, "progress": False, "data.segment_seconds": 1.0,
                     "data": {"valid_segment_seconds": 1.25, "pesq_clips": 0}})
        out = run_experiment_job(job, tmp_path / method)
        run = json.loads((out / "history.json").read_text())["run"]
        assert {k: run["kd_options"][k] for k in options} == options

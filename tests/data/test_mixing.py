"""The clean+noise layout (dfkd.data.mixing): splits, seeded mixing, fixed valid/test sets, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
import pytest
import soundfile as sf
import torch

import dfkd
from dfkd.audio import snr_db
from dfkd.data.datasets import corpus_pairs, training_dataset
from dfkd.data.layouts import detect_layout
from dfkd.data.mix_dataset import MixtureDataset
from dfkd.data.mixing import MixSpec, mix, mix_corpus, reverberate, source_files
from dfkd.errors import DfkdError

SR = 16000


def make_clean_noise(root: Path, speakers: int = 6, noises: int = 3, rirs: int = 2) -> Path:
    """``root/{clean,noise,rir}/``: harmonic 'voices' (1.2 s), white-ish noises, decaying RIRs."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.2 * SR)) / SR
    for i in range(speakers):
        f0 = 100 + 20 * i
        voice = 0.1 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
        voice *= 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)
        (root / "clean").mkdir(parents=True, exist_ok=True)
        sf.write(root / "clean" / f"spk{i}_utt.wav", voice.astype(np.float32), SR)
    for i in range(noises):
        (root / "noise").mkdir(parents=True, exist_ok=True)
        sf.write(root / "noise" / f"noise{i}.wav",
                 (0.05 * rng.standard_normal(SR // 2 + 1000 * i)).astype(np.float32), SR)
    for i in range(rirs):
        (root / "rir").mkdir(parents=True, exist_ok=True)
        tail = rng.standard_normal(2000) * np.exp(-np.arange(2000) / (300 + 200 * i))
        rir = np.concatenate([np.zeros(40), [1.0], 0.3 * tail]).astype(np.float32)
        sf.write(root / "rir" / f"room{i}.wav", rir, SR, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = make_clean_noise(tmp_path_factory.mktemp("mix"))
    return mix_corpus(root, root / "clean", root / "noise", root / "rir", snr_range=(0, 10),
                      rir_prob=0.5)


def test_layout_is_detected_and_splits_share_no_speaker_or_noise(corpus):
    assert detect_layout(corpus) == "clean+noise"
    spec = MixSpec(corpus / "clean", corpus / "noise", corpus / "rir")
    splits = {s: source_files(spec, s) for s in ("train", "valid", "test")}
    for a in splits:
        for b in splits:
            if a < b:
                assert not set(splits[a][0]) & set(splits[b][0])  # speakers
                assert not set(splits[a][1]) & set(splits[b][1])  # noises
    assert all(splits[s][0] for s in splits)
    assert sum(len(splits[s][0]) for s in splits) == 6


def test_mix_hits_the_snr_and_level_and_reverb_keeps_the_direct_path():
    spec = MixSpec(Path("."), Path("."), snr_range=(7.0, 7.0), level_range=(-20.0, -20.0))
    rng = np.random.default_rng(0)
    clean = np.sin(np.arange(SR) / 5).astype(np.float32)
    noisy, target = mix(clean, rng.standard_normal(SR).astype(np.float32), rng, spec)
    assert snr_db(target, noisy) == pytest.approx(7.0, abs=1e-3)
    assert 20 * np.log10(np.sqrt(np.mean(target**2))) == pytest.approx(-20.0, abs=1e-3)
    impulse = np.zeros(100, np.float32)
    impulse[10] = 0.5
    np.testing.assert_allclose(reverberate(clean, impulse), clean, atol=1e-6)  # aligned, peak 1


def test_valid_is_fixed_train_varies_test_is_written_once(corpus):
    valid = training_dataset(corpus, "valid", 0.5, seed=3)
    again = training_dataset(corpus, "valid", 0.5, seed=99)  # the run's seed does not matter
    again.set_epoch(5)
    assert isinstance(valid, MixtureDataset) and valid.fixed and len(valid) >= 8
    for i in range(len(valid)):
        assert torch.equal(valid[i][0], again[i][0])
    train = training_dataset(corpus, "train", 0.5, seed=0)
    first = train[0][0].clone()
    train.set_epoch(1)
    assert not torch.equal(first, train[0][0])
    pairs = corpus_pairs(corpus, "test")
    assert pairs and all(p.noisy.is_file() and p.clean.is_file() for p in pairs)
    noisy = sf.read(pairs[0].noisy)[0]
    mtime = pairs[0].noisy.stat().st_mtime_ns
    assert corpus_pairs(corpus, "test")[0].noisy.stat().st_mtime_ns == mtime  # reused
    for p in pairs:  # rebuilt from scratch: the same mixtures
        p.noisy.unlink()
    (pairs[0].noisy.parents[1] / "done").unlink()
    np.testing.assert_array_equal(sf.read(corpus_pairs(corpus, "test")[0].noisy)[0], noisy)


def test_bad_settings_are_named(tmp_path):
    make_clean_noise(tmp_path, speakers=2)
    with pytest.raises(DfkdError, match="snr_range"):
        mix_corpus(tmp_path, snr_range=(10, 0))
    with pytest.raises(DfkdError, match="unknown setting"):
        mix_corpus(tmp_path, snr=(0, 10))
    mix_corpus(tmp_path)
    with pytest.raises(DfkdError, match="at least 3"):
        training_dataset(tmp_path, "train", 0.5)
    assert json.loads((tmp_path / "dfkd_corpus.json").read_text())["layout"] == "clean+noise"


def test_a_clean_noise_folder_pair_trains_a_student(corpus, tmp_path):
    """The issue's done-criterion: distil a mini student from a clean+noise pair of folders."""
    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    from dfkd.checkpoint import model_payload, save_checkpoint
    from dfkd.models import build

    save_checkpoint(teacher, model_payload(build("convtasnet", "mini"), train_seed=0))
    run = dfkd.distill_student(teacher=teacher, data=corpus, out=tmp_path / "student", preset="mini",
                               method="dfkd", steps=2, adapter="fixed:1000",
                               settings={"batch_size": 2, "data.segment_seconds": 0.5,
                                         "valid_every": 2, "data.valid_segment_seconds": 0.5,
                                         "data.pesq_clips": 1, "threads": 1})
    assert (run / "best.pt").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["kd"]["adapter"] == "fixed:1000"
    history = json.loads((run / "history.json").read_text())
    assert history["valid"] and np.isfinite(history["valid"][-1]["si_snr"])
    enhanced = dfkd.load(run).enhance(np.zeros(SR, np.float32) + 0.01, SR)
    assert enhanced.shape == (SR,)
    # an option the method does not declare fails before anything is written
    with pytest.raises(DfkdError, match=r"KD method 'sisnr' has no option 'adapter'"):
        dfkd.distill_student(teacher=teacher, data=corpus, out=tmp_path / "bad", method="sisnr",
                             adapter="fixed:1000")
    assert not (tmp_path / "bad").exists()


def test_corpus_mix_command_writes_a_corpus_that_trains(tmp_path, capsys):
    from dfkd.cli import main

    sources = make_clean_noise(tmp_path / "sources", speakers=8, noises=8)
    out = tmp_path / "mine"
    assert main(["corpus", "mix", "--out", str(out), "--clean", str(sources / "clean"),
                 "--noise", str(sources / "noise"), "--rir", str(sources / "rir"),
                 "--snr-min", "0", "--snr-max", "10", "--rir-prob", "0.25", "--valid-fraction", "0.2",
                 "--test-fraction", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "clean+noise corpus (train " in printed and "2 impulse response(s)" in printed
    meta = json.loads((out / "dfkd_corpus.json").read_text())
    assert meta["snr_range"] == [0.0, 10.0] and meta["rir_prob"] == 0.25 and meta["rir"] == "../sources/rir"
    assert detect_layout(out) == "clean+noise"
    noisy, target = training_dataset(out, "train", 0.5)[0]
    assert noisy.shape == target.shape == (SR // 2,)
    counts = [len(source_files(MixSpec(sources / "clean", sources / "noise", valid_fraction=0.2,
                                       test_fraction=0.2), s)[0]) for s in ("train", "valid", "test")]
    assert sum(counts) == 8 and all(counts)  # every speaker in exactly one split


@pytest.mark.parametrize("case, match", [
    ("no-folder", "--noise must be a folder"),
    ("empty-clean", "no audio files"),
    ("snr", "snr_range .* the minimum exceeds the maximum"),
    ("few-speakers", "at least 3"),
    ("paired-corpus", "already a folders corpus of paired files"),
])
def test_corpus_mix_refuses_bad_input_and_writes_nothing(tmp_path, capsys, case, match):
    from dfkd.cli import main

    sources = make_clean_noise(tmp_path / "sources", speakers=2 if case == "few-speakers" else 6)
    clean, noise = sources / "clean", sources / "noise"
    out = tmp_path / "mine"
    args = ["corpus", "mix", "--out", str(out), "--clean", str(clean), "--noise", str(noise)]
    if case == "no-folder":
        args[args.index(str(noise))] = str(tmp_path / "missing")
    elif case == "empty-clean":
        (tmp_path / "empty").mkdir()
        args[args.index(str(clean))] = str(tmp_path / "empty")
    elif case == "snr":
        args += ["--snr-min", "10", "--snr-max", "0"]
    elif case == "paired-corpus":
        (out / "noisy").mkdir(parents=True)
        (out / "clean").mkdir()

    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dfkd corpus: error:")
    assert __import__("re").search(match, err), err
    assert not (out / "dfkd_corpus.json").exists()


def test_three_groups_give_every_split_one_even_when_the_hash_holds_out_two(tmp_path):
    # with 3 noise files and 20 % + 20 % held out, the name hash once sent none to train (the
    # first training step then failed on a DNS error): train now gets one back
    sources = make_clean_noise(tmp_path, noises=3)
    spec = MixSpec(sources / "clean", sources / "noise", valid_fraction=0.2, test_fraction=0.2)
    noise = {split: source_files(spec, split)[1] for split in ("train", "valid", "test")}
    assert all(len(files) == 1 for files in noise.values())
    assert len({f for files in noise.values() for f in files}) == 3

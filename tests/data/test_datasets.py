"""dfkd.data.datasets: every layout from miniature fixtures, the datasets, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dfkd.data import datasets as data
from dfkd.audio import snr_db
from dfkd.errors import DfkdError


def _tone(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """A distinct, reproducible signal per seed (so mix-ups between files are visible)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def _write(path: Path, seconds: float, rate: int = 16000, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tone(seconds, rate, seed, **kw), rate, subtype="FLOAT")
    return path


def make_voicebank(root: Path, rate: int = 48000) -> Path:
    for part, speakers in (("trainset_28spk_wav", ("p226", "p230", "p287")),
                           ("testset_wav", ("p232", "p257"))):
        for k, speaker in enumerate(speakers):
            for n in (1, 2):
                name, seconds = f"{speaker}_{n:03d}.wav", 0.5 + 0.1 * n
                _write(root / f"clean_{part}" / name, seconds, rate, seed=10 * k + n)
                _write(root / f"noisy_{part}" / name, seconds, rate, seed=10 * k + n + 5)
    return root


def make_dns(root: Path) -> Path:
    base = root / "datasets"
    for k in range(6):
        _write(base / "clean" / "read_speech" / f"book_{k:05d}_chp_0001_reader_{k:05d}_0.wav", 1.5, seed=k)
    for k in range(4):
        _write(base / "noise" / f"noise_fileid_{k}.wav", 0.4 + 0.5 * k, seed=20 + k)
    for test_set in ("no_reverb", "with_reverb"):
        folder = base / "test_set" / "synthetic" / test_set
        for k in (0, 3, 12):
            _write(folder / "clean" / f"clean_fileid_{k}.wav", 1.0, seed=k)
            _write(folder / "noisy" / f"clnsp{k}_train_{k}_snr5_tl-22_fileid_{k}.wav", 1.0, seed=k + 1)
    return root


def make_folder_pairs(root: Path, names=("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")) -> Path:
    for k, name in enumerate(names):
        _write(root / "clean" / f"{name}.wav", 0.5, seed=k)
        _write(root / "noisy" / f"{name}.wav", 0.5, seed=k + 50)
    return root


# ------------------------------------------------------------------------------------ layouts
def test_voicebank_layout_splits_and_valid_speakers(tmp_path: Path) -> None:
    root = make_voicebank(tmp_path / "vb")
    assert data.detect_layout(root) == "voicebank"
    train, valid, test = (data.corpus_pairs(root, s) for s in data.SPLITS)
    assert [p.name for p in train] == ["p230_001", "p230_002"]
    assert [p.name for p in valid] == ["p226_001", "p226_002", "p287_001", "p287_002"]
    assert [p.name for p in test] == ["p232_001", "p232_002", "p257_001", "p257_002"]
    assert train[0].noisy == root / "noisy_trainset_28spk_wav" / "p230_001.wav"
    assert train[0].clean == root / "clean_trainset_28spk_wav" / "p230_001.wav"
    custom = data.corpus_pairs(root, "valid", valid_speakers=["p230"])
    assert {data.speaker_of(p.name) for p in custom} == {"p230"}
    (root / data.CORPUS_META).write_text(json.dumps({"valid_speakers": ["p287"]}))
    assert {data.speaker_of(p.name) for p in data.corpus_pairs(root, "valid")} == {"p287"}
    with pytest.raises(DfkdError, match="p999"):
        data.corpus_pairs(root, "valid", valid_speakers=["p999"])


def test_voicebank_48k_is_served_at_16k_through_the_cache(tmp_path: Path) -> None:
    root = make_voicebank(tmp_path / "vb")
    pairs = data.corpus_pairs(root, "test")
    noisy, clean, name = data.UtteranceDataset(pairs)[0]
    assert name == "p232_001" and noisy.shape == clean.shape == (int(0.6 * 16000),)
    assert noisy.dtype == torch.float32
    assert list((root / ".dfkd_cache_16k").rglob("*.npy"))  # cached next to the corpus


def test_dns_layout_test_sets_and_training_mixtures(tmp_path: Path) -> None:
    root = make_dns(tmp_path / "dns")
    assert data.detect_layout(root) == "dns"
    test = data.corpus_pairs(root, "test")
    assert [p.name for p in test][:3] == ["no_reverb_fileid_0", "no_reverb_fileid_12", "no_reverb_fileid_3"]
    assert len(test) == 6
    pair = next(p for p in test if p.name == "with_reverb_fileid_3")
    assert pair.clean.name == "clean_fileid_3.wav" and pair.noisy.name.endswith("_fileid_3.wav")
    one_set = data.corpus_pairs(root / "datasets" / "test_set" / "synthetic" / "no_reverb", "test")
    assert [p.name for p in one_set] == ["no_reverb_fileid_0", "no_reverb_fileid_12", "no_reverb_fileid_3"]
    with pytest.raises(DfkdError, match="on the fly"):
        data.corpus_pairs(root, "train")

    train = data.training_dataset(root, "train", 1.0, snr_range=(0.0, 10.0), seed=3)
    valid = data.training_dataset(root, "valid", 1.0, valid_fraction=0.3)
    assert isinstance(train, data.DNSMixtureDataset) and not train.fixed and valid.fixed
    train_clean = {p.name for p in train.clean_files}
    assert train_clean.isdisjoint({p.name for p in valid.clean_files})  # reader-disjoint
    noisy, clean = train[0]
    assert noisy.shape == clean.shape == (16000,)
    assert 0.0 - 0.01 <= snr_db(clean.numpy(), noisy.numpy()) <= 10.0 + 0.01
    again = data.training_dataset(root, "train", 1.0, snr_range=(0.0, 10.0), seed=3)
    assert torch.equal(again[0][0], noisy)  # pure function of (seed, epoch, i)
    train.set_epoch(1)
    assert not torch.equal(train[0][0], noisy)  # training mixtures vary per epoch
    first = valid[0][0]
    valid.set_epoch(5)
    assert torch.equal(valid[0][0], first)  # validation mixtures never change


def test_folder_pairs_flat_holdout_and_split_folders(tmp_path: Path) -> None:
    flat = make_folder_pairs(tmp_path / "flat")
    assert data.detect_layout(flat) == "folders"
    names = lambda split: {p.name for p in data.corpus_pairs(flat, split)}  # noqa: E731
    assert names("valid") and names("train").isdisjoint(names("valid"))
    # The test split is held out too (issue 14): it never holds a clip trained on.
    assert names("test") and names("test").isdisjoint(names("train") | names("valid"))
    assert names("train") | names("valid") | names("test") == set("abcdefghij")
    assert names("valid") == names("valid")  # deterministic

    nested = tmp_path / "nested"
    make_folder_pairs(nested / "train", names=("a", "b", "c"))
    make_folder_pairs(nested / "test", names=("x", "y"))
    assert [p.name for p in data.corpus_pairs(nested, "test")] == ["x", "y"]
    # No valid/ folder: a hashed hold-out of train/.
    train, valid = data.corpus_pairs(nested, "train"), data.corpus_pairs(nested, "valid")
    assert len(valid) == 1 and {p.name for p in train + valid} == {"a", "b", "c"}


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_manifests(tmp_path: Path, kind: str) -> None:
    root = make_folder_pairs(tmp_path / "audio", names=("a", "b", "c"))
    rows = [{"noisy": f"audio/noisy/{n}.wav", "clean": f"audio/clean/{n}.wav", "split": s,
             "name": f"utt_{n}"} for n, s in (("a", "train"), ("b", "validation"), ("c", "test"))]
    manifest = tmp_path / f"list.{kind}"
    if kind == "csv":
        manifest.write_text("noisy,clean,split,name\n" + "".join(
            f"{r['noisy']},{r['clean']},{r['split']},{r['name']}\n" for r in rows))
    else:
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert data.detect_layout(manifest) == "manifest"
    assert [p.name for p in data.corpus_pairs(manifest, "valid")] == ["utt_b"]
    test = data.corpus_pairs(manifest, "test")
    assert test == [data.Pair("utt_c", root / "noisy" / "c.wav", root / "clean" / "c.wav")]
    assert data.UtteranceDataset(test)[0][2] == "utt_c"


def test_manifest_errors_name_file_and_line(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text("noisy,clean,split\na.wav,,train\n")
    with pytest.raises(DfkdError, match=r"bad\.csv:2: missing the 'clean' column"):
        data.corpus_pairs(manifest, "train")
    manifest.write_text("noisy,clean,split\na.wav,b.wav,holdout\n")
    with pytest.raises(DfkdError, match=r"bad\.csv:2: unknown split 'holdout'"):
        data.corpus_pairs(manifest, "train")
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"noisy": "a.wav", "clean": "a.wav"}\nnot json\n')
    with pytest.raises(DfkdError, match=r"bad\.jsonl:2"):
        data.corpus_pairs(jsonl, "train")


def test_unknown_layout_and_split(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DfkdError, match="unrecognised corpus layout"):
        data.corpus_pairs(tmp_path / "empty", "train")
    with pytest.raises(DfkdError, match="not found"):
        data.corpus_pairs(tmp_path / "nowhere", "train")
    with pytest.raises(DfkdError, match="unknown split"):
        data.corpus_pairs(make_folder_pairs(tmp_path / "f"), "dev")


# ----------------------------------------------------------------------------------- datasets
def _all_pairs(root: Path, strict: bool = True) -> list:
    """Every pair of a flat noisy/ + clean/ folder (its ``test`` split is only a held-out part)."""
    from dfkd.data.layouts import pair_by_name

    return pair_by_name(root / "noisy", root / "clean", strict=strict)


def test_segment_dataset_lengths_padding_and_determinism(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    _write(root / "clean" / "long.wav", 2.0, seed=1)
    _write(root / "noisy" / "long.wav", 2.0, seed=2)
    _write(root / "clean" / "short.wav", 0.25, seed=3)
    _write(root / "noisy" / "short.wav", 0.25, seed=4)
    pairs = _all_pairs(root)
    ds = data.SegmentDataset(pairs, segment_seconds=0.5, seed=7)
    assert ds.fixed and len(ds) == 2 and ds.segment_samples == 8000
    for i in range(2):
        noisy, clean = ds[i]
        assert noisy.shape == clean.shape == (8000,) and noisy.dtype == torch.float32
    long_i, short_i = [p.name for p in pairs].index("long"), [p.name for p in pairs].index("short")
    # The crop is the source slice at crop_offset; the short clip is zero-padded at the end.
    offset = ds.crop_offset(long_i)
    full = sf.read(pairs[long_i].clean, dtype="float32")[0]
    np.testing.assert_array_equal(ds[long_i][1].numpy(), full[offset:offset + 8000])
    short = ds[short_i][1].numpy()
    np.testing.assert_array_equal(short[:4000], sf.read(pairs[short_i].clean, dtype="float32")[0])
    assert not short[4000:].any() and ds.item_key(short_i) == "short@0+8000"

    other = data.SegmentDataset(pairs, segment_seconds=0.5, seed=7)
    assert torch.equal(other[long_i][0], ds[long_i][0]) and other.item_key(long_i) == ds.item_key(long_i)
    offsets = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        offsets.add(ds.crop_offset(long_i))
    assert len(offsets) > 1  # new crops each epoch
    ds.set_epoch(3)
    other.set_epoch(3)
    assert ds.crop_offset(long_i) == other.crop_offset(long_i)  # a pure function of (seed, epoch, i)
    fixed = data.SegmentDataset(pairs, segment_seconds=0.5, seed=7, vary_crops=False)
    first = fixed.item_key(long_i)
    fixed.set_epoch(5)
    assert fixed.item_key(long_i) == first


def test_multichannel_and_mixed_rates_are_converted(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    _write(root / "noisy" / "x.wav", 0.5, rate=48000, seed=1, channels=2)
    _write(root / "clean" / "x.wav", 0.5, rate=16000, seed=1)
    pairs = _all_pairs(root)
    assert data.scan_pairs(pairs, progress=False) == []
    noisy, clean, _ = data.UtteranceDataset(pairs, cache_dir=tmp_path / "cache")[0]
    assert noisy.shape == clean.shape == (8000,)
    assert data.SegmentDataset(pairs, 0.25, cache_dir=tmp_path / "cache")[0][0].shape == (4000,)


# --------------------------------------------------------------------------------- bad inputs
def _broken_corpus(root: Path) -> Path:
    """Folder pairs with one problem per file name."""
    _write(root / "clean" / "good.wav", 0.5, seed=1)
    _write(root / "noisy" / "good.wav", 0.5, seed=2)
    _write(root / "noisy" / "orphan.wav", 0.5, seed=3)  # no clean partner
    _write(root / "clean" / "short.wav", 0.5, seed=4)
    _write(root / "noisy" / "short.wav", 0.4, seed=5)  # length mismatch
    _write(root / "clean" / "nan.wav", 0.5, seed=6)
    x = _tone(0.5, 16000, 7)
    x[100] = np.nan
    sf.write(root / "noisy" / "nan.wav", x, 16000, subtype="FLOAT")
    (root / "noisy" / "text.wav").write_text("not audio")
    _write(root / "clean" / "text.wav", 0.5, seed=8)
    sf.write(root / "noisy" / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    _write(root / "clean" / "empty.wav", 0.5, seed=9)
    _write(root / "noisy" / "silent.wav", 0.5, seed=10)
    sf.write(root / "clean" / "silent.wav", np.zeros(8000, dtype=np.float32), 16000)
    return root


def test_scan_reports_every_problem_at_once(tmp_path: Path) -> None:
    root = _broken_corpus(tmp_path / "broken")
    with pytest.raises(DfkdError, match=r"orphan\.wav.*no clean partner"):
        data.corpus_pairs(root, "valid")  # strict by default
    problems = data.scan_pairs(_all_pairs(root, strict=False), progress=False)
    expected = {
        "orphan": ["clean", "orphan.wav: missing clean file"],
        "short": ["noisy", "length mismatch"],
        "nan": ["noisy", "NaN or Inf"],
        "text": ["noisy", "not a readable audio file"],
        "empty": ["noisy", "empty"],
        "silent": ["clean", "silent"],
    }
    assert len(problems) == len(expected), problems
    for name, (role, text) in expected.items():
        hits = [p for p in problems if p.startswith(str(root / role / f"{name}.wav")) and text in p]
        assert len(hits) == 1, (name, problems)
    assert not any("good.wav" in p for p in problems)


@pytest.mark.parametrize("name", ["short", "nan", "text", "empty"])
def test_datasets_raise_naming_the_bad_file(tmp_path: Path, name: str) -> None:
    root = _broken_corpus(tmp_path / "broken")
    pair = next(p for p in _all_pairs(root, strict=False) if p.name == name)
    with pytest.raises(DfkdError) as info:
        data.UtteranceDataset([pair])[0]
    assert str(pair.noisy) in str(info.value)
    with pytest.raises(DfkdError) as info:
        data.SegmentDataset([pair], 0.5)[0]  # the whole file: a crop reads only what it uses
    assert str(pair.noisy) in str(info.value)


def test_segment_dataset_lists_all_mismatches_at_construction(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    for k, name in enumerate(("a", "b", "c")):
        _write(root / "clean" / f"{name}.wav", 0.5, seed=k)
        _write(root / "noisy" / f"{name}.wav", 0.5 if name == "b" else 0.3, seed=k)
    with pytest.raises(DfkdError, match="2 problem") as info:
        data.SegmentDataset(_all_pairs(root), 0.25)
    assert "a.wav" in str(info.value) and "c.wav" in str(info.value)

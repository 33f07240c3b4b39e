"""The offline demo corpus: layout, speaker-disjoint splits, SNRs, determinism, atomicity, fallback."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfkd import cli
from dfkd.data import datasets as data
from dfkd.data.demo import build as corpus, speech as corpus_speech
from dfkd.audio import snr_db
from dfkd.errors import DfkdError
from tiny_corpus import tree_digest

SMALL = dict(minutes=0.4, valid_minutes=0.15, test_minutes=0.15, synthetic=True)


def _build(out: Path, **overrides) -> dict:
    settings = corpus.DemoSettings(**{**SMALL, **overrides})
    return corpus.build_demo_corpus(out, settings, progress=False, log=lambda _: None)


def _items(folder: Path) -> list[dict]:
    with open(folder / corpus.ITEMS_CSV) as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def synthetic_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "corpus"
    meta = _build(out, snr_min=-5.0, snr_max=15.0)
    assert meta["built"] and meta["speech"] == "synthetic"
    return out


def test_layout_loads_and_splits_are_speaker_disjoint(synthetic_corpus: Path) -> None:
    assert data.detect_layout(synthetic_corpus) == "voicebank"
    meta = json.loads((synthetic_corpus / data.CORPUS_META).read_text())
    speakers = {}
    for split in data.SPLITS:
        pairs = data.corpus_pairs(synthetic_corpus, split)
        assert pairs, split
        speakers[split] = {data.speaker_of(p.name) for p in pairs}
        assert speakers[split] == set(meta["splits"][split]["speakers"])
        assert data.scan_pairs(pairs, progress=False) == []
    assert speakers["train"].isdisjoint(speakers["valid"])
    assert speakers["train"].isdisjoint(speakers["test"])
    assert speakers["valid"].isdisjoint(speakers["test"])
    assert meta["valid_speakers"] == sorted(speakers["valid"])
    minutes = sum(len(sf.read(p.clean)[0]) for p in data.corpus_pairs(synthetic_corpus, "train")) / 16000 / 60
    assert minutes >= SMALL["minutes"]
    assert (synthetic_corpus / "README.md").is_file()


def test_snrs_in_range_and_as_recorded(synthetic_corpus: Path) -> None:
    items = {row["name"]: row for row in _items(synthetic_corpus)}
    kinds = set()
    for split in data.SPLITS:
        for pair in data.corpus_pairs(synthetic_corpus, split):
            noisy, rate = sf.read(pair.noisy, dtype="float64")
            clean, _ = sf.read(pair.clean, dtype="float64")
            assert rate == 16000 and noisy.shape == clean.shape and np.max(np.abs(noisy)) < 1.0
            measured = snr_db(clean, noisy)
            assert -5.05 <= measured <= 15.05, pair.name
            assert abs(measured - float(items[pair.name]["snr_db"])) < 0.05, pair.name
            kinds.add(items[pair.name]["noise"])
    assert len(kinds) >= 4  # several noise types, not one


def test_same_settings_same_bytes_and_rebuild_is_noop(synthetic_corpus: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    _build(twin, snr_min=-5.0, snr_max=15.0)
    assert tree_digest(twin) == tree_digest(synthetic_corpus)
    stamp = (twin / data.CORPUS_META).stat().st_mtime_ns
    messages: list[str] = []
    meta = corpus.build_demo_corpus(twin, corpus.DemoSettings(**SMALL), progress=False,
                                    log=messages.append)
    assert not meta["built"] and "nothing to do" in messages[0]
    assert (twin / data.CORPUS_META).stat().st_mtime_ns == stamp
    with pytest.raises(DfkdError, match="other settings"):
        _build(twin, seed=1)


def test_force_replaces_and_seed_changes_content(tmp_path: Path) -> None:
    out = tmp_path / "c"
    _build(out, minutes=0.1, valid_minutes=0.05, test_minutes=0.05)
    before = tree_digest(out)
    settings = corpus.DemoSettings(**{**SMALL, "minutes": 0.1, "valid_minutes": 0.05,
                                      "test_minutes": 0.05, "seed": 1})
    corpus.build_demo_corpus(out, settings, force=True, progress=False, log=lambda _: None)
    assert tree_digest(out) != before
    assert json.loads((out / data.CORPUS_META).read_text())["settings"]["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temp or old folders left


def test_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    real_write = corpus.write_audio

    def failing_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        real_write(*args, **kwargs)

    monkeypatch.setattr(corpus, "write_audio", failing_write)
    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "c", minutes=0.1, valid_minutes=0.05, test_minutes=0.05)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(DfkdError, match="not a dfkd corpus"):
        _build(tmp_path / "mine")


def test_bad_settings_are_user_errors(tmp_path: Path) -> None:
    for bad in ({"snr_min": 10.0, "snr_max": 0.0}, {"minutes": 0.0}, {"reverb_prob": 2.0}):
        with pytest.raises(DfkdError):
            _build(tmp_path / "x", **bad)


def test_reverberation_keeps_snr_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "rev"
    _build(out, minutes=0.1, valid_minutes=0.05, test_minutes=0.05, reverb_prob=1.0,
           snr_min=0.0, snr_max=5.0)
    rows = _items(out)
    assert all(0.2 <= float(r["rt60_s"]) <= 0.8 for r in rows)
    pair = data.corpus_pairs(out, "test")[0]
    measured = snr_db(sf.read(pair.clean)[0], sf.read(pair.noisy)[0])
    assert -0.05 <= measured <= 5.05


def test_fallback_to_synthetic_speech_warns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(corpus_speech, "ASTERISK_SOUNDS", tmp_path / "no_such_sounds")
    with pytest.warns(corpus.DemoCorpusWarning, match="falling back to synthetic speech"):
        meta = _build(tmp_path / "c", minutes=0.1, valid_minutes=0.05, test_minutes=0.05,
                      synthetic=False)
    assert meta["speech"] == "synthetic"
    assert data.corpus_pairs(tmp_path / "c", "train")
    again = _build(tmp_path / "c", minutes=0.1, valid_minutes=0.05, test_minutes=0.05,
                   synthetic=False)
    assert not again["built"]  # still no real speech: the fallback corpus is up to date


def test_cli_demo_and_check(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["corpus", "demo", "--out", str(out), "--synthetic", "--minutes", "0.1",
            "--valid-minutes", "0.05", "--test-minutes", "0.05", "--quiet"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(["corpus", "check", str(out), "--quiet"]) == 0
    bad = next((out / "noisy_testset_wav").iterdir())
    bad.write_text("broken")
    assert cli.main(["corpus", "check", str(out), "--quiet"]) == 1
    assert str(bad) in capsys.readouterr().err
    assert cli.main(["corpus", "demo", "--out", str(out), "--snr-min", "9", "--snr-max", "1"]) == 1


def test_real_speech_path(tmp_path: Path) -> None:
    missing = corpus_speech.missing_asterisk_sources()
    if missing:
        pytest.skip("Debian packages absent (" + ", ".join(missing) + "): `make system-packages`")
    meta = _build(tmp_path / "real", synthetic=False, minutes=0.2, valid_minutes=0.1,
                  test_minutes=0.1)
    assert meta["speech"] == "asterisk"
    assert meta["splits"]["train"]["languages"] == ["en", "es", "it"]
    assert meta["splits"]["valid"]["speakers"] == ["ivrvoice"]
    assert meta["splits"]["test"]["speakers"] == ["june"]
    assert [p.name for p in data.corpus_pairs(tmp_path / "real", "valid")][0] == "ivrvoice_0001"
    assert "CC-BY-SA-3.0" in (tmp_path / "real" / "README.md").read_text()
    rows = _items(tmp_path / "real")
    assert all(2.0 <= float(r["seconds"]) <= 6.0 for r in rows)  # concatenated/split prompts
    assert all(r["sources"].startswith(r["language"] + "/") for r in rows)


@pytest.mark.slow
def test_full_default_build_has_the_documented_size(tmp_path: Path) -> None:
    # its build time is part of `make demo`'s measured wall time (README), not a timed test
    meta = corpus.build_demo_corpus(tmp_path / "full", progress=False, log=lambda _: None)
    assert meta["splits"]["train"]["minutes"] >= 30 and meta["splits"]["test"]["minutes"] >= 5
    assert data.scan_pairs(data.corpus_pairs(tmp_path / "full", "test"), progress=False) == []

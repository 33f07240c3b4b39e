"""The held-out test corpus: layout, disjointness from the demo corpus, SNRs, determinism, errors."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dfkd import cli
from dfkd.audio import snr_db
from dfkd.data import datasets as data
from dfkd.data.demo import heldout, heldout_noise
from dfkd.data.demo import noise as demo_noise
from dfkd.data.demo import speech as demo_speech
from dfkd.errors import DfkdError
from tiny_corpus import tree_digest

SHORT = dict(minutes=0.5)


def _needs_packages() -> None:
    missing = heldout.missing_packages()
    if missing:
        pytest.skip(f"Debian packages not unpacked in {heldout_noise.debian_root()} ("
                    + ", ".join(missing) + "): `make system-packages` as root")


def _build(out: Path, **overrides) -> dict:
    settings = heldout.HeldoutSettings(**{**SHORT, **overrides})
    return heldout.build_heldout_corpus(out, settings, progress=False, log=lambda _: None)


def _items(folder: Path) -> dict[str, dict]:
    with open(folder / heldout.ITEMS_CSV) as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    _needs_packages()
    out = tmp_path_factory.mktemp("heldout") / "corpus"
    assert _build(out)["built"]
    return out


def test_kinds_and_speakers_are_not_the_demos() -> None:
    demo_speakers = {s.speaker for s in demo_speech.ASTERISK_SPEAKERS} | {
        v[0] for v in demo_speech.SYNTHETIC_VOICES}
    assert {s.speaker for s in heldout.HELDOUT_SPEAKERS}.isdisjoint(demo_speakers)
    assert set(heldout_noise.NOISE_KINDS).isdisjoint(demo_noise.NOISE_TYPES)
    assert {s.package for s in heldout.HELDOUT_SPEAKERS}.isdisjoint(demo_speech.ASTERISK_PACKAGES)
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    for package in heldout.HELDOUT_PACKAGES:
        assert package in makefile, package


def test_synthetic_kinds_are_finite_and_seeded() -> None:
    for kind in heldout_noise.SYNTHETIC_KINDS:
        a = heldout_noise.make_noise(kind, np.random.default_rng(3), 16000, {})
        b = heldout_noise.make_noise(kind, np.random.default_rng(3), 16000, {})
        assert a.shape == (16000,) and a.dtype == np.float32 and np.all(np.isfinite(a)), kind
        assert np.array_equal(a, b) and 0.5 < float(np.std(a)) < 2.0, kind
    with pytest.raises(ValueError):
        heldout_noise.make_noise("desktop_alerts", np.random.default_rng(0), 100, {})


def test_layout_reads_as_test_split_and_is_disjoint_from_the_demo(corpus: Path) -> None:
    assert data.detect_layout(corpus) == "voicebank"
    assert sorted(p.name for p in corpus.iterdir()) == sorted(
        ["README.md", data.CORPUS_META, heldout.ITEMS_CSV, "clean_testset_wav", "noisy_testset_wav"])
    pairs = data.corpus_pairs(corpus, "test")
    assert pairs and data.scan_pairs(pairs, progress=False) == []
    meta = json.loads((corpus / data.CORPUS_META).read_text())
    items = _items(corpus)
    assert {p.name for p in pairs} == set(items)
    speakers = {data.speaker_of(p.name) for p in pairs}
    assert speakers == set(meta["splits"]["test"]["speakers"]) == {s.speaker for s in heldout.HELDOUT_SPEAKERS}
    assert speakers.isdisjoint(meta["excluded"]["speakers"])
    assert {"allison", "carlo", "ivrvoice", "june"} <= set(meta["excluded"]["speakers"])
    kinds = {row["noise"] for row in items.values()}
    assert kinds <= set(meta["noise_types"]) and len(kinds) >= 3
    assert set(meta["noise_types"]).isdisjoint(meta["excluded"]["noise_types"])
    assert set(meta["excluded"]["noise_types"]) == set(demo_noise.NOISE_TYPES)
    assert meta["skipped"] == [] and set(meta["licence"]["noise"]) == set(meta["noise_types"])
    minutes = sum(len(sf.read(p.clean)[0]) for p in pairs) / 16000 / 60
    assert minutes >= SHORT["minutes"]
    readme = (corpus / "README.md").read_text()
    assert "dfkd corpus heldout" in readme and "voip.ammdomus.it" in readme


def test_snrs_in_range_and_as_recorded(corpus: Path) -> None:
    items = _items(corpus)
    for pair in data.corpus_pairs(corpus, "test"):
        noisy, rate = sf.read(pair.noisy, dtype="float64")
        clean, _ = sf.read(pair.clean, dtype="float64")
        assert rate == 16000 and noisy.shape == clean.shape and np.max(np.abs(noisy)) < 1.0
        measured = snr_db(clean, noisy)
        assert -10.05 <= measured <= 20.05, pair.name
        assert abs(measured - float(items[pair.name]["snr_db"])) < 0.05, pair.name


def test_same_seed_same_bytes_other_seed_differs(corpus: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _build(again)
    assert tree_digest(again) == tree_digest(corpus)
    assert _build(again)["built"] is False  # same settings: a no-op
    with pytest.raises(DfkdError, match="--force"):
        _build(again, seed=1)
    other = tmp_path / "other"
    _build(other, seed=1)
    assert tree_digest(other) != tree_digest(corpus)


def test_missing_packages_skip_or_stop_with_the_reason(tmp_path: Path, monkeypatch) -> None:
    _needs_packages()
    real = heldout_noise.debian_root()
    partial = tmp_path / "debian"
    partial.mkdir()
    for package in ("asterisk-prompt-es-co", "oxygen-sounds"):  # one speaker, one recorded kind
        (partial / package).symlink_to(real / package)
    monkeypatch.setenv("DFKD_DEBIAN_DIR", str(partial))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = _build(tmp_path / "partial", minutes=0.2)
    told = " ".join(str(w.message) for w in caught if w.category is heldout.HeldoutCorpusWarning)
    for package in ("asterisk-prompt-fr-armelle", "asterisk-prompt-it-menardi-wav", "heroes-sound-effects"):
        assert package in told
    assert meta["splits"]["test"]["speakers"] == ["july"]
    assert "game_effects" not in meta["noise_types"] and "desktop_alerts" in meta["noise_types"]
    assert "heroes-sound-effects" in meta["skipped"]
    monkeypatch.setenv("DFKD_DEBIAN_DIR", str(tmp_path / "nothing"))
    with pytest.raises(DfkdError, match="make system-packages"):
        _build(tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_bad_settings_are_user_errors(tmp_path: Path) -> None:
    for bad in (dict(minutes=0), dict(snr_min=5, snr_max=0), dict(reverb_prob=2)):
        with pytest.raises(DfkdError):
            _build(tmp_path / "x", **bad)


def test_cli_heldout(tmp_path: Path, capsys) -> None:
    _needs_packages()
    out = tmp_path / "cli"
    assert cli.main(["corpus", "heldout", "--out", str(out), "--minutes", "0.2", "--quiet"]) == 0
    assert "held-out corpus built" in capsys.readouterr().out
    assert data.corpus_pairs(out, "test")

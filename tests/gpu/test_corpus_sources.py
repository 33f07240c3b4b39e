"""gpu/corpus_sources.py: the demo corpus rebuilt from what its build reads is the same corpus,
file for file; a corpus that differs is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dfkd.data.demo import speech as speech_lib

REPO = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, str(REPO / "gpu" / "corpus_sources.py")]


def _run(*args, check: bool = True) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([*SCRIPT, *map(str, args)], capture_output=True, text=True, env=env,
                          check=check)


@pytest.mark.slow  # decodes every Asterisk prompt of five languages (~20 s)
def test_the_packed_sources_rebuild_the_real_speech_corpus_bit_for_bit(tmp_path):
    from dfkd.data.demo.build import DemoSettings, build_demo_corpus, _real_speech_missing

    if _real_speech_missing():
        pytest.skip("the Asterisk sound packages or the g722 codec are not installed")
    corpus = tmp_path / "corpus"
    build_demo_corpus(corpus, DemoSettings(minutes=0.5, valid_minutes=0.1, test_minutes=0.1),
                      progress=False, log=lambda _: None)
    _run("pack", "--corpus", corpus, "--out", tmp_path / "sources")
    carried = sorted(p.relative_to(tmp_path / "sources" / "sounds").as_posix()
                     for p in (tmp_path / "sources" / "sounds").rglob("*.g722"))
    every = sum(1 for _ in speech_lib.ASTERISK_SOUNDS.rglob("*.g722"))
    assert 0 < len(carried) < every / 10  # only the prompts some utterance contains
    rebuilt = tmp_path / "rebuilt"
    done = _run("build", "--sources", tmp_path / "sources", "--out", rebuilt)
    assert "equal the packed corpus" in done.stdout
    digest = json.loads((tmp_path / "sources" / "corpus_digest.json").read_text())["files"]
    assert len(digest) == len(list(corpus.rglob("*.wav"))) + 3  # the wavs, csv, json, README


def test_a_corpus_that_differs_is_named(tmp_path):
    from dfkd.data.demo.build import DemoSettings, build_demo_corpus

    corpus = tmp_path / "corpus"
    build_demo_corpus(corpus, DemoSettings(minutes=0.1, valid_minutes=0.05, test_minutes=0.05,
                                           synthetic=True), progress=False, log=lambda _: None)
    _run("pack", "--corpus", corpus, "--out", tmp_path / "sources")
    rebuilt = tmp_path / "rebuilt"  # synthetic speech: the sources are the settings alone
    assert "equal the packed corpus" in _run("build", "--sources", tmp_path / "sources",
                                             "--out", rebuilt).stdout
    victim = next(rebuilt.glob("noisy_testset_wav/*.wav"))
    victim.write_bytes(victim.read_bytes()[:-2] + b"\x00\x01")
    (rebuilt / ".dfkd_teacher_cache").mkdir()  # caches written later do not count
    (rebuilt / ".dfkd_teacher_cache" / "x.npy").write_bytes(b"x")
    checked = _run("digest", rebuilt, "--against", tmp_path / "sources" / "corpus_digest.json",
                   check=False)
    assert checked.returncode == 1
    assert "1 of " in checked.stderr and victim.relative_to(rebuilt).as_posix() in checked.stderr

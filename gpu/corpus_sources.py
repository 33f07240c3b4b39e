"""The demo corpus on a machine without Debian's sound packages, bit for bit.

The demo corpus (`dfkd corpus demo`, 148 MB of PCM-16 wav, ~85 MB as FLAC) does not fit the 64 MiB
that travels to the GPU machine, and neither do all of its sources (the Asterisk G.722 prompts of
five languages and the music-on-hold files, ~85 MB). What the build *reads* does fit: it decodes
every prompt of a language only to know the prompts' order and lengths (the seeded grouping into
utterances depends on them) and then keeps about 40 of the ~135 minutes. So ``pack`` keeps

* the G.722 files of the prompts that some corpus utterance contains (``dfkd_corpus_items.csv``
  names them), ~28 MB;
* a table of every prompt of every language with its length after trimming and splitting, so that
  the build sees the same list (the prompts nobody uses become silence of the same length);
* the music-on-hold files as FLAC (lossless), ~9 MB;
* the SHA-256 of every file of the built corpus (``corpus_digest.json``),

and ``build`` runs the ordinary builder on them and checks every file against those digests: the
corpus on the GPU machine is the CPU's, or the build stops with the names of the files that differ.

    python gpu/corpus_sources.py pack --corpus data/demo_corpus --out .gpu/corpus     # CPU
    python gpu/corpus_sources.py build --sources .gpu/corpus --out DIR               # anywhere
    python gpu/corpus_sources.py digest DIR                                          # compare
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

DIGEST = "corpus_digest.json"
PROMPTS = "prompts.json"
SOUNDS, MOH = "sounds", "moh"
# caches that tools write into a corpus folder later (resampled copies, teacher outputs)
SKIPPED_PREFIX = "."


def corpus_digest(corpus: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file of a built corpus (hidden cache folders skipped)."""
    digests = {}
    for path in sorted(corpus.rglob("*")):
        rel = path.relative_to(corpus)
        if path.is_file() and not any(part.startswith(SKIPPED_PREFIX) for part in rel.parts):
            digests[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _settings(corpus: Path) -> dict:
    meta = json.loads((corpus / "dfkd_corpus.json").read_text(encoding="utf-8"))
    if meta.get("dfkd_corpus") != "demo":
        sys.exit(f"error: {corpus} is not a corpus of `dfkd corpus demo`")
    return meta["settings"]


def pack(corpus: Path, out: Path) -> int:
    """Write the sources that rebuild ``corpus`` (see the module docstring) into ``out``."""
    from dfkd.data.demo import noise as noise_lib
    from dfkd.data.demo import speech as speech_lib

    settings = _settings(corpus)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if settings["speech"] == "asterisk":
        used = set()
        with open(corpus / "dfkd_corpus_items.csv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                used |= {name.split("#")[0] for name in row["sources"].split(" + ")}
        languages = sorted({lang for s in speech_lib.ASTERISK_SPEAKERS for lang in s.sources})
        table = {lang: [[name, len(audio)] for name, audio in speech_lib.asterisk_prompts(lang)]
                 for lang in languages}
        for name in sorted(used):
            target = out / SOUNDS / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(speech_lib.ASTERISK_SOUNDS / name, target)
        (out / PROMPTS).write_text(json.dumps(table), encoding="utf-8")
        pack_music(out / MOH, [s for stems in noise_lib.MOH_SPLITS.values() for s in stems])
    digest = {"settings": settings, "files": corpus_digest(corpus)}
    (out / DIGEST).write_text(json.dumps(digest, indent=1), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: sources of {corpus} ({len(digest['files'])} files), {size / 1e6:.1f} MB")
    return 0


def pack_music(out: Path, stems: list[str]) -> None:
    """The music-on-hold files as FLAC: int16 in, int16 out, the samples the builder reads."""
    import soundfile as sf

    from dfkd.data.demo import noise as noise_lib

    out.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        samples, rate = sf.read(noise_lib.MOH_DIR / f"{stem}.wav", dtype="int16")
        sf.write(out / f"{stem}.flac", samples, rate, format="FLAC", subtype="PCM_16")


def unpack_music(packed: Path, out: Path) -> Path:
    """:func:`pack_music`'s files back to the wav files :mod:`dfkd.data.demo.noise` reads."""
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    for flac in sorted(packed.glob("*.flac")):
        samples, rate = sf.read(flac, dtype="int16")
        sf.write(out / f"{flac.stem}.wav", samples, rate, subtype="PCM_16")
    return out


def _patch_sources(sources: Path, scratch: Path) -> None:
    """Point the demo builder at the packed sources: the carried prompts, silence of the recorded
    length for the others, and the music decoded back to the wav files it reads."""
    from dfkd.data.demo import noise as noise_lib
    from dfkd.data.demo import speech as speech_lib

    table = json.loads((sources / PROMPTS).read_text(encoding="utf-8"))
    carried = sources / SOUNDS

    def packed_prompts(lang: str) -> list[tuple[str, np.ndarray]]:
        pieces: dict[str, np.ndarray] = {}
        prompts = []
        for name, length in table[lang]:
            path = carried / name.split("#")[0]
            if path.is_file():
                if name not in pieces:
                    pieces.update(speech_lib.prompt_pieces(path, name.split("#")[0]))
                audio = pieces.get(name)
                if audio is None or len(audio) != length:
                    sys.exit(f"error: {name}: the carried prompt decodes to another length than "
                             "on the machine that packed it (another g722 version?)")
            else:  # never part of an utterance: only its length matters (the grouping)
                audio = np.zeros(length, dtype=np.float32)
            prompts.append((name, audio))
        return prompts

    speech_lib.asterisk_prompts = packed_prompts
    speech_lib.ASTERISK_SOUNDS = carried  # missing_asterisk_sources() looks for *.g722 there
    noise_lib.MOH_DIR = unpack_music(sources / MOH, scratch / MOH)


def build(sources: Path, out: Path) -> int:
    """Build the corpus of ``sources`` at ``out`` and check it file by file; 1 on any difference."""
    from dfkd.data.demo.build import DemoSettings, build_demo_corpus

    expected = json.loads((sources / DIGEST).read_text(encoding="utf-8"))
    settings = dict(expected["settings"])
    speech = settings.pop("speech")
    settings.pop("format", None)
    with tempfile.TemporaryDirectory(prefix="dfkd-moh-") as scratch:
        if speech == "asterisk":
            _patch_sources(sources, Path(scratch))
        build_demo_corpus(out, DemoSettings(**settings), progress=False)
    return verify(out, expected["files"])


def verify(corpus: Path, expected: dict[str, str]) -> int:
    """Compare a corpus with the digests of the one it must equal; prints the result."""
    found = corpus_digest(corpus)
    differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
    if differ:
        print(f"error: {corpus}: {len(differ)} of {len(expected)} files differ from the packed "
              f"corpus ({', '.join(differ[:5])}{'...' if len(differ) > 5 else ''}); its runs would "
              "not be the recorded ones", file=sys.stderr)
        return 1
    print(f"{corpus}: all {len(expected)} files equal the packed corpus (SHA-256)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack", help="the sources of a built demo corpus, and its digests")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("build", help="rebuild the corpus from packed sources and check it")
    b.add_argument("--sources", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("digest", help="check a corpus against packed digests (or print its own)")
    d.add_argument("corpus", type=Path)
    d.add_argument("--against", type=Path, default=None, help="a corpus_digest.json")
    m = sub.add_parser("music", help="pack the music of some splits as FLAC, or unpack it to wav")
    m.add_argument("--splits", nargs="+", default=None, help="pack these splits' tracks")
    m.add_argument("--unpack", type=Path, default=None, help="a packed folder to turn into wav")
    m.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.action == "music":
        from dfkd.data.demo import noise as noise_lib

        if args.unpack is not None:
            unpack_music(args.unpack, args.out)
        else:
            pack_music(args.out, [s for split in args.splits for s in noise_lib.MOH_SPLITS[split]])
        return 0
    if args.action == "pack":
        return pack(args.corpus, args.out)
    if args.action == "build":
        return build(args.sources, args.out)
    if args.against is not None:
        return verify(args.corpus, json.loads(args.against.read_text(encoding="utf-8"))["files"])
    print(json.dumps(corpus_digest(args.corpus), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

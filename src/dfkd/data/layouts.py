"""Corpus layouts: find the (noisy, clean) pairs of a split in the folders users actually have.

Supported layouts (detected by :func:`detect_layout`):

``voicebank``
    VoiceBank+DEMAND as published: ``clean_trainset_28spk_wav``, ``noisy_trainset_28spk_wav``,
    ``clean_testset_wav``, ``noisy_testset_wav`` (other ``*_trainset_*`` / ``*_testset_*`` spellings,
    such as the 56-speaker set or ``_16k`` copies, are accepted when unambiguous). Files are paired by
    name (``p226_001.wav``); the speaker is the part before the first ``_``. The validation split is
    the training files of held-out speakers: ``p226`` and ``p287`` unless the caller says otherwise
    or a ``dfkd_corpus.json`` in the root names its own ``valid_speakers`` (the demo corpus does).
``dns``
    DNS Challenge 2020. Training and validation mixtures are made on the fly from ``clean/`` and
    ``noise/`` folders (see :mod:`dfkd.data.dns`); the synthetic test sets ``no_reverb`` /
    ``with_reverb`` hold ``noisy/*_fileid_N.wav`` and ``clean/clean_fileid_N.wav``, paired by ``N``.
    The root may be the DNS ``datasets`` folder, a folder holding the test sets, or one test set.
``folders``
    ``<root>/noisy`` + ``<root>/clean`` or ``<root>/<split>/noisy|clean``, paired by file stem
    (``x.wav`` with ``x.wav`` or ``x.flac``). A ``train/`` without ``valid/`` gives up a hold-out.
``manifest``
    A CSV or JSONL file with ``noisy`` and ``clean`` columns (paths relative to the manifest) and
    optional ``split`` and ``name`` columns.

Layouts without a split of their own (flat folder pairs, a manifest without ``split``) hold out
fixed, name-hashed fractions of the pairs: ``valid_fraction`` (default 10 %) as validation and
``TEST_FRACTION`` (10 %) as test, so that a test split never holds a clip trained on. An evaluation
set meant to be scored whole goes under ``test/noisy`` + ``test/clean`` (or a manifest with
``split``). :func:`split_source` says, in words, where a split comes from.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..audio import AUDIO_EXTENSIONS
from ..errors import DfkdError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
#: Metadata file of a dfkd-built corpus (the demo corpus); may name ``valid_speakers``.
CORPUS_META = "dfkd_corpus.json"
#: The usual VoiceBank+DEMAND validation speakers (held out of the 28-speaker training set).
VOICEBANK_VALID_SPEAKERS: tuple[str, ...] = ("p226", "p287")
DEFAULT_VALID_FRACTION = 0.1
#: Fraction of a corpus without splits held out (name-hashed) as its test split.
TEST_FRACTION = 0.1
_SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                  "validation": "valid", "dev": "valid", "test": "test", "eval": "test"}
_MAX_LISTED = 10


@dataclass(frozen=True)
class Pair:
    """One training/evaluation example: a noisy file and its clean reference."""

    name: str
    noisy: Path
    clean: Path


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise DfkdError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return split


def _listing(items: Sequence[str], sep: str = ", ") -> str:
    shown = sep.join(items[:_MAX_LISTED])
    more = f" (and {len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return shown + more


def audio_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Audio files in ``folder`` (hidden files skipped), sorted for determinism."""
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in pattern
        if p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def audio_by_stem(folder: Path, role: str) -> dict[str, Path]:
    """Stem -> audio file of a flat folder of outputs (``dfkd evaluate --enhanced``, a teacher's
    enhanced files); ``role`` names the folder in the errors (missing folder, a stem twice)."""
    if not folder.is_dir():
        raise DfkdError(f"{folder}: {role} folder not found")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if path.stem in files:
            raise DfkdError(f"{path}: same name as {files[path.stem]} in the {role} folder")
        files[path.stem] = path
    return files


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in audio_files(folder):
        if path.stem in files:
            raise DfkdError(f"{folder}: two audio files share the name {path.stem!r} "
                            f"({files[path.stem].name}, {path.name}); cannot pair them")
        files[path.stem] = path
    return files


def pair_by_name(noisy_dir: Path, clean_dir: Path, strict: bool = True) -> list[Pair]:
    """Pair ``noisy_dir/X.*`` with ``clean_dir/X.*``.

    With ``strict`` an unmatched file raises a :class:`DfkdError` listing every unmatched file;
    otherwise the pair is kept with the expected (missing) partner path, so that
    :func:`dfkd.data.datasets.scan_pairs` can report it beside all other problems.
    """
    noisy, clean = _by_stem(noisy_dir), _by_stem(clean_dir)
    lonely_noisy = sorted(set(noisy) - set(clean))
    lonely_clean = sorted(set(clean) - set(noisy))
    if strict and (lonely_noisy or lonely_clean):
        lonely = [f"{noisy[s]}: no clean partner in {clean_dir}" for s in lonely_noisy]
        lonely += [f"{clean[s]}: no noisy partner in {noisy_dir}" for s in lonely_clean]
        raise DfkdError(f"{len(lonely)} file(s) without a partner (pairs match by file name): "
                        + _listing(lonely, sep="; "))
    pairs = []
    for stem in sorted(set(noisy) | set(clean)):
        # A lonely file's partner gets the path it would have had (same name, other folder).
        n = noisy[stem] if stem in noisy else noisy_dir / clean[stem].name
        c = clean[stem] if stem in clean else clean_dir / noisy[stem].name
        pairs.append(Pair(stem, n, c))
    return pairs


def stable_fraction(name: str) -> float:
    """A fixed pseudo-random number in [0, 1) for ``name`` (same on every machine and run)."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / float(16**12)


def holdout_split(pairs: Sequence[Pair], split: str, valid_fraction: float,
                  test_fraction: float = 0.0) -> list[Pair]:
    """Split a set without its own splits, by name hash: ``valid_fraction`` -> valid,
    ``test_fraction`` -> test, the rest -> train (the three never overlap).

    At least one pair goes to validation when there are two or more, and one to test (when
    ``test_fraction`` > 0) when there are three or more. With ``test_fraction`` 0, ``test`` is empty.
    """
    ranked = sorted(pairs, key=lambda p: stable_fraction(p.name))
    held = {p.name for p in ranked if stable_fraction(p.name) < valid_fraction}
    if not held and len(ranked) >= 2 and valid_fraction > 0:
        held = {ranked[0].name}
    rest = [p for p in ranked if p.name not in held]
    tested = {p.name for p in rest
              if valid_fraction <= stable_fraction(p.name) < valid_fraction + test_fraction}
    if not tested and len(rest) >= 2 and test_fraction > 0:
        tested = {rest[0].name}
    which = {"valid": held, "test": tested}
    if split in which:
        chosen = [p for p in pairs if p.name in which[split]]
    else:
        chosen = [p for p in pairs if p.name not in held and p.name not in tested]
    return sorted(chosen, key=lambda p: p.name)


# ----------------------------------------------------------------------------------- VoiceBank
def _voicebank_dir(root: Path, kind: str, part: str) -> Path | None:
    """``clean_trainset_28spk_wav`` etc.; other spellings when exactly one folder matches."""
    exact = root / (f"{kind}_{part}_28spk_wav" if part == "trainset" else f"{kind}_{part}_wav")
    if exact.is_dir():
        return exact
    found = sorted(p for p in root.glob(f"{kind}_{part}*") if p.is_dir())
    if len(found) > 1:
        raise DfkdError(f"{root}: several VoiceBank folders match {kind}_{part}*: "
                        f"{_listing([p.name for p in found])}; keep one or point at a manifest")
    return found[0] if found else None


def read_corpus_meta(root: Path) -> dict:
    """The ``dfkd_corpus.json`` of ``root`` (empty dict when absent)."""
    meta = root / CORPUS_META
    if not meta.is_file():
        return {}
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        raise DfkdError(f"{meta}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DfkdError(f"{meta}: expected a JSON object")
    return data


def speaker_of(name: str) -> str:
    """VoiceBank-style speaker id: the part of a file name before the first ``_``."""
    return name.split("_", 1)[0]


def voicebank_pairs(root: Path, split: str, valid_speakers: Iterable[str] | None,
                    strict: bool) -> list[Pair]:
    part = "testset" if split == "test" else "trainset"
    noisy_dir, clean_dir = _voicebank_dir(root, "noisy", part), _voicebank_dir(root, "clean", part)
    if noisy_dir is None or clean_dir is None:
        missing = f"noisy_{part}*" if noisy_dir is None else f"clean_{part}*"
        raise DfkdError(f"{root}: VoiceBank layout without a {missing} folder")
    pairs = pair_by_name(noisy_dir, clean_dir, strict=strict)
    if split == "test":
        return pairs
    if valid_speakers is None:
        valid_speakers = read_corpus_meta(root).get("valid_speakers", VOICEBANK_VALID_SPEAKERS)
    held = set(valid_speakers)
    if split == "valid" and held and not any(speaker_of(p.name) in held for p in pairs):
        raise DfkdError(f"{noisy_dir}: no files of the validation speaker(s) "
                        f"{', '.join(sorted(held))}; choose others with valid_speakers")
    return [p for p in pairs if (speaker_of(p.name) in held) == (split == "valid")]


# --------------------------------------------------------------------------------- DNS test sets
_FILEID = re.compile(r"fileid_(\d+)$")


def _is_dns_test_set(folder: Path) -> bool:
    clean, noisy = folder / "clean", folder / "noisy"
    if not (clean.is_dir() and noisy.is_dir()):
        return False
    return any(_FILEID.search(p.stem) for p in audio_files(clean)[:50])


def dns_test_sets(root: Path) -> dict[str, Path]:
    """Synthetic DNS test sets under ``root`` by name (``no_reverb``, ``with_reverb``, ...)."""
    if _is_dns_test_set(root):
        return {root.name: root}
    found: dict[str, Path] = {}
    for base in (root, root / "synthetic", root / "test_set" / "synthetic",
                 root / "datasets" / "test_set" / "synthetic"):
        if base.is_dir():
            for sub in sorted(p for p in base.iterdir() if p.is_dir()):
                if _is_dns_test_set(sub):
                    found.setdefault(sub.name, sub)
    return found


def dns_test_pairs(name: str, folder: Path, strict: bool) -> list[Pair]:
    """Pair ``noisy/*_fileid_N`` with ``clean/clean_fileid_N`` by ``N``; names ``<set>_fileid_N``."""
    def index(sub: str) -> dict[str, Path]:
        ids: dict[str, Path] = {}
        for path in audio_files(folder / sub):
            match = _FILEID.search(path.stem)
            if match is None:
                continue  # READMEs or stray files do not break pairing
            if match.group(1) in ids:
                raise DfkdError(f"{folder / sub}: fileid_{match.group(1)} occurs twice "
                                f"({ids[match.group(1)].name}, {path.name})")
            ids[match.group(1)] = path
        return ids

    noisy, clean = index("noisy"), index("clean")
    lonely = sorted(set(noisy) ^ set(clean), key=int)
    if strict and lonely:
        files = [str(noisy.get(i) or clean[i]) for i in lonely]
        raise DfkdError(f"{folder}: {len(lonely)} file(s) without a partner of the same fileid: "
                        f"{_listing(files)}")
    pairs = []
    for i in sorted(set(noisy) | set(clean), key=int):
        n = noisy.get(i, folder / "noisy" / f"missing_fileid_{i}.wav")
        c = clean.get(i, folder / "clean" / f"clean_fileid_{i}.wav")
        pairs.append(Pair(f"{name}_fileid_{i}", n, c))
    return pairs


def is_dns_root(root: Path) -> bool:
    """A DNS training root (``clean/`` + ``noise/``, possibly under ``datasets/``) or test sets."""
    for base in (root, root / "datasets"):
        if (base / "clean").is_dir() and (base / "noise").is_dir():
            return True
    return bool(dns_test_sets(root))


# ------------------------------------------------------------------------------------ manifests
def _manifest_rows(path: Path) -> list[tuple[int, dict]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise DfkdError(f"{path}: cannot read manifest ({err})") from err
    rows: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        for line, row in enumerate(reader, start=2):
            rows.append((line, {k.strip(): (v or "").strip() for k, v in row.items() if k}))
    else:
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError as err:
                raise DfkdError(f"{path}:{line}: not a JSON object ({err})") from err
            if not isinstance(row, dict):
                raise DfkdError(f"{path}:{line}: expected a JSON object per line")
            rows.append((line, {str(k): str(v) for k, v in row.items() if v is not None}))
    if not rows:
        raise DfkdError(f"{path}: manifest has no rows")
    return rows


def manifest_pairs(path: Path, split: str, valid_fraction: float) -> list[Pair]:
    rows = _manifest_rows(path)
    with_split = [bool(row.get("split")) for _, row in rows]
    if any(with_split) and not all(with_split):
        line = rows[with_split.index(False)][0]
        raise DfkdError(f"{path}:{line}: row without a split while other rows have one")
    pairs: list[tuple[str | None, Pair]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        for column in ("noisy", "clean"):
            if not row.get(column):
                raise DfkdError(f"{path}:{line}: missing the {column!r} column")
        noisy, clean = (path.parent / row["noisy"]), (path.parent / row["clean"])
        name = row.get("name") or Path(row["noisy"]).stem
        if name in seen:
            raise DfkdError(f"{path}:{line}: name {name!r} already used on line {seen[name]}")
        seen[name] = line
        row_split = row.get("split")
        if row_split:
            if row_split.lower() not in _SPLIT_ALIASES:
                raise DfkdError(f"{path}:{line}: unknown split {row_split!r} "
                                f"(use {', '.join(SPLITS)})")
            row_split = _SPLIT_ALIASES[row_split.lower()]
        pairs.append((row_split, Pair(name, noisy, clean)))
    if all(with_split):
        return sorted((p for s, p in pairs if s == split), key=lambda p: p.name)
    return holdout_split(sorted((p for _, p in pairs), key=lambda p: p.name), split, valid_fraction,
                         TEST_FRACTION)


def split_source(root: str | os.PathLike, split: str) -> str | None:
    """Where ``split`` of the corpus at ``root`` comes from, when it is a hash hold-out of a corpus
    without splits (None otherwise): for ``dfkd corpus check`` and ``dfkd evaluate`` to say."""
    root = Path(root)
    layout = detect_layout(root)
    flat = layout == "folders" and not any((root / s).is_dir() for s in SPLITS)
    if layout == "manifest":
        flat = not all(row.get("split") for _, row in _manifest_rows(root))
    if flat:
        share = {"train": 1 - DEFAULT_VALID_FRACTION - TEST_FRACTION,
                 "valid": DEFAULT_VALID_FRACTION, "test": TEST_FRACTION}[split]
        return (f"held out by name hash: about {share:.0%} of the pairs, disjoint from the other "
                "splits (no split folders or split column; an evaluation set scored whole goes "
                "under test/noisy + test/clean)")
    if (layout == "folders" and split in ("train", "valid") and (root / "train").is_dir()
            and not (root / "valid").is_dir()):
        return "valid held out of train/ by name hash (no valid/ folder)"
    return None


# ------------------------------------------------------------------------------------- dispatch
def detect_layout(root: str | os.PathLike) -> str:
    """``"manifest"``, ``"clean+noise"``, ``"voicebank"``, ``"dns"`` or ``"folders"`` for ``root``."""
    from .mixing import mix_spec

    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in (".csv", ".jsonl", ".json"):
            return "manifest"
        raise DfkdError(f"{root}: a corpus file must be a .csv or .jsonl manifest")
    if not root.is_dir():
        raise DfkdError(f"{root}: corpus folder not found")
    if mix_spec(root) is not None:  # dfkd_corpus.json says so (dfkd.data.mixing)
        return "clean+noise"
    if _voicebank_dir(root, "clean", "trainset") or _voicebank_dir(root, "clean", "testset"):
        return "voicebank"
    if is_dns_root(root):
        return "dns"
    if (root / "noisy").is_dir() and (root / "clean").is_dir():
        return "folders"
    if any((root / s / "noisy").is_dir() and (root / s / "clean").is_dir() for s in SPLITS):
        return "folders"
    raise DfkdError(
        f"{root}: unrecognised corpus layout. Expected VoiceBank+DEMAND folders "
        "(clean_trainset_28spk_wav, noisy_trainset_28spk_wav, clean_testset_wav, noisy_testset_wav), "
        "DNS Challenge folders (clean/ + noise/, or no_reverb/ with_reverb/ test sets), "
        "noisy/ + clean/ (optionally under train/ valid/ test/), or a .csv/.jsonl manifest"
    )


def folder_pairs(root: Path, split: str, valid_fraction: float, strict: bool) -> list[Pair]:
    def has(folder: Path) -> bool:
        return (folder / "noisy").is_dir() and (folder / "clean").is_dir()

    if has(root / split):
        return pair_by_name(root / split / "noisy", root / split / "clean", strict=strict)
    if split in ("train", "valid") and has(root / "train") and not has(root / "valid"):
        # No valid/ folder: hold out a hashed fraction of train/ rather than fail.
        pairs = pair_by_name(root / "train" / "noisy", root / "train" / "clean", strict=strict)
        return holdout_split(pairs, split, valid_fraction)
    if has(root):
        pairs = pair_by_name(root / "noisy", root / "clean", strict=strict)
        return holdout_split(pairs, split, valid_fraction, TEST_FRACTION)
    raise DfkdError(f"{root}: no {split}/noisy and {split}/clean folders for split {split!r}")


def corpus_pairs(
    root: str | os.PathLike,
    split: str,
    *,
    valid_speakers: Iterable[str] | None = None,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    strict: bool = True,
) -> list[Pair]:
    """The pairs of ``split`` ("train", "valid" or "test") in the corpus at ``root``, sorted by name.

    The layout is detected from the folder names (:func:`detect_layout`). ``valid_speakers``
    overrides the VoiceBank validation speakers (default ``p226``, ``p287``, or those named by the
    corpus' ``dfkd_corpus.json``); ``valid_fraction`` is the name-hashed hold-out used by layouts
    without a validation split. With ``strict=False`` files without a partner are kept (with the
    missing partner's expected path) so that :func:`scan_pairs` reports them; by default they raise.
    """
    split = _check_split(split)
    root = Path(root)
    layout = detect_layout(root)
    if layout == "manifest":
        pairs = manifest_pairs(root, split, valid_fraction)
    elif layout == "clean+noise":
        from .mixing import mixture_test_set

        if split != "test":
            raise DfkdError(f"{root}: clean+noise {split} mixtures are made on the fly; use "
                            "dfkd.data.datasets.training_dataset (or MixtureDataset.from_root)")
        pairs = [Pair(name, noisy, clean) for name, noisy, clean in mixture_test_set(root)]
    elif layout == "voicebank":
        pairs = voicebank_pairs(root, split, valid_speakers, strict)
    elif layout == "dns":
        if split != "test":
            raise DfkdError(f"{root}: DNS Challenge {split} mixtures are made on the fly; use "
                            "dfkd.data.datasets.training_dataset (or DNSMixtureDataset.from_root)")
        sets = dns_test_sets(root)
        if not sets:
            raise DfkdError(f"{root}: no DNS synthetic test set (no_reverb/, with_reverb/ with "
                            "noisy/ and clean/ folders) found")
        pairs = [p for name, folder in sets.items() for p in dns_test_pairs(name, folder, strict)]
    else:
        pairs = folder_pairs(root, split, valid_fraction, strict)
    pairs = sorted(pairs, key=lambda p: p.name)
    if not pairs:
        raise DfkdError(f"{root}: split {split!r} has no files ({layout} layout)")
    return pairs

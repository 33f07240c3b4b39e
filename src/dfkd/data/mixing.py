"""Your own data, mixed on the fly: a folder of clean speech + a folder of noise (+ impulse responses).

The ``clean+noise`` layout generalises the DNS Challenge recipe (:mod:`dfkd.data.dns`) to any
speech and noise: a corpus folder holds a ``dfkd_corpus.json`` that says ``"layout":
"clean+noise"`` and where the files are (:func:`mix_corpus` writes it), e.g.::

    {"layout": "clean+noise", "clean": "/data/speech", "noise": "/data/noises", "rir": "/data/rirs",
     "snr_range": [-5, 20], "level_range": [-35, -15], "rir_prob": 0.5, "seed": 0}

(paths relative to the corpus folder; ``clean``/``noise``/``rir`` default to its ``clean/``,
``noise/`` and, if present, ``rir/`` folders). Then every command's ``--data`` takes the folder:

* **train**: a new mixture per item and epoch, a pure function of ``(seed, epoch, i)``;
* **valid**: a fixed, seeded set of ``valid_items`` mixtures (the epoch is ignored);
* **test**: a fixed, seeded set of whole-utterance mixtures, written once as ``noisy/`` + ``clean/``
  files under ``<root>/.dfkd_mixtures/<key>/`` (or ``~/.cache/dfkd/mixtures/`` when the folder is
  read-only) so that ``dfkd evaluate`` scores the same clips in every run. The key hashes the
  settings and the file list (names, sizes, mtimes): change either and a new set is made.

Speakers and noises are split by a fixed hash of their name (a DNS ``reader_NNNNN`` tag groups a
reader's files): ``valid_fraction`` and ``test_fraction`` of them are held out, so the three
splits share no speaker and no noise file (with fewer than three noise files, all splits share
them). Each mixture: a clean segment set to a uniform random level in ``level_range`` (dBFS), with
probability ``rir_prob`` convolved with a random impulse response (aligned on its direct path; the
target is the reverberant speech: the models learn to denoise, not to dereverberate), plus a random
noise excerpt (tiled when short) at a uniform random SNR in ``snr_range``; both are scaled down
together if the mixture would clip.

This module holds the settings, the splits and the mixing itself (no torch);
:class:`dfkd.data.mix_dataset.MixtureDataset` serves the mixtures to training.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import AUDIO_EXTENSIONS, load_mono, scale_to_snr, write_audio
from ..errors import DfkdError

LAYOUT = "clean+noise"
META = "dfkd_corpus.json"  # the same file as dfkd.data.layouts.CORPUS_META
_READER = re.compile(r"reader_(\d+)")
_SPLIT_STREAM = {"train": 0, "valid": 1, "test": 2}  # separate random streams per split


@dataclass(frozen=True)
class MixSpec:
    """How a ``clean+noise`` corpus is split and mixed (the keys of its ``dfkd_corpus.json``).

    Attributes:
        clean: folder of clean speech (searched recursively; any rate, mono-mixed).
        noise: folder of noise files.
        rir: folder of room impulse responses, or ``None`` for no reverberation.
        snr_range: SNR in dB, uniform per mixture.
        level_range: clean speech RMS level in dBFS, uniform per mixture.
        rir_prob: probability that a mixture is reverberant (when ``rir`` is given).
        valid_fraction, test_fraction: share of speakers (and noises) held out for each.
        valid_items: size of the fixed validation set (default: 4 per validation file, >= 8).
        test_items: size of the fixed test set (default: one mixture per test file).
        test_seconds: crop test utterances to this length (default: whole utterances).
        seed: seed of the fixed validation and test sets (training mixtures use the run's seed).
    """

    clean: Path
    noise: Path
    rir: Path | None = None
    snr_range: tuple[float, float] = (-5.0, 20.0)
    level_range: tuple[float, float] = (-35.0, -15.0)
    rir_prob: float = 0.5
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    valid_items: int | None = None
    test_items: int | None = None
    test_seconds: float | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def check(self) -> "MixSpec":
        """Validate the settings (raises :class:`DfkdError` naming the bad one)."""
        for name in ("snr_range", "level_range"):
            low, high = getattr(self, name)
            if low > high:
                raise DfkdError(f"{name} {[low, high]}: the minimum exceeds the maximum")
        if not 0 <= self.rir_prob <= 1:
            raise DfkdError(f"rir_prob must lie in [0, 1], not {self.rir_prob}")
        if not (0 < self.valid_fraction < 1 and 0 < self.test_fraction < 1
                and self.valid_fraction + self.test_fraction < 1):
            raise DfkdError("valid_fraction and test_fraction must be in (0, 1) with a sum below 1")
        for folder in (self.clean, self.noise) + ((self.rir,) if self.rir else ()):
            if not Path(folder).is_dir():
                raise DfkdError(f"{folder}: folder not found (clean+noise corpus)")
        return self


def _settings(spec: MixSpec) -> dict:
    data = {k: v for k, v in asdict(spec).items() if k != "extra"}
    for key in ("clean", "noise", "rir"):
        data[key] = str(data[key]) if data[key] is not None else None
    return data


def mix_corpus(root: str | os.PathLike, clean: str | os.PathLike | None = None,
               noise: str | os.PathLike | None = None, rir: str | os.PathLike | None = None,
               **settings) -> Path:
    """Make ``root`` a ``clean+noise`` corpus: write its ``dfkd_corpus.json``; returns ``root``.

    Args:
        root: the corpus folder (created if needed); ``--data`` takes it afterwards.
        clean, noise: the folders of speech and of noise (paths as usual, relative to the working
            directory; default ``root/clean`` and ``root/noise``). The file stores them relative
            to ``root``, so the corpus can move together with them.
        rir: a folder of room impulse responses (``None``: no reverberation, unless ``root/rir``).
        settings: any other :class:`MixSpec` field (``snr_range=(0, 20)``, ``rir_prob=0.3``, ...).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    unknown = set(settings) - {f for f in MixSpec.__dataclass_fields__
                               if f not in ("clean", "noise", "rir", "extra")}
    if unknown:
        raise DfkdError(f"mix_corpus: unknown setting(s) {', '.join(sorted(unknown))}")

    def stored(folder, default: str | None) -> str | None:
        if folder is None:
            return default
        return os.path.relpath(Path(folder).expanduser().absolute(), root.absolute())

    data = {"layout": LAYOUT, "clean": stored(clean, "clean"), "noise": stored(noise, "noise"),
            "rir": stored(rir, None), **settings}
    for key in ("snr_range", "level_range"):
        if key in data:
            data[key] = [float(v) for v in data[key]]
    mix_spec(root, data).check()  # fail now, not at the first training step
    (root / META).write_text(json.dumps(data, indent=2) + "\n")
    return root


def mix_spec(root: str | os.PathLike, meta: dict | None = None) -> MixSpec | None:
    """The :class:`MixSpec` of ``root``, or ``None`` when it is not a ``clean+noise`` corpus."""
    root = Path(root)
    if meta is None:
        path = root / META
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DfkdError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("layout") != LAYOUT:
        return None

    def folder(key: str, default: str | None) -> Path | None:
        value = meta.get(key, default)
        if value is None:
            return None
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else root / path

    rir_default = "rir" if (root / "rir").is_dir() else None
    if "rir" in meta and meta["rir"] is None:
        rir_default = None
    fields = {k: v for k, v in meta.items() if k in MixSpec.__dataclass_fields__
              and k not in ("clean", "noise", "rir", "extra")}
    for key in ("snr_range", "level_range"):
        if key in fields:
            fields[key] = (float(fields[key][0]), float(fields[key][1]))
    return MixSpec(folder("clean", "clean"), folder("noise", "noise"), folder("rir", rir_default),
                   **fields)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                  and not p.name.startswith(".") and p.is_file())


def _fraction(name: str) -> float:
    """The same fixed hash as :func:`dfkd.data.layouts.stable_fraction`."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:12], 16) / float(16**12)


def _group(path: Path) -> str:
    match = _READER.search(path.stem)
    return f"reader_{match.group(1)}" if match else path.stem


def split_files(files: Sequence[Path], split: str, valid_fraction: float, test_fraction: float,
                what: str = "files") -> list[Path]:
    """The files of ``split`` after holding out whole groups (readers) for valid and test.

    With three groups or more, each split gets at least one; with fewer, :class:`DfkdError`.
    """
    groups = sorted({_group(p) for p in files}, key=_fraction)
    if len(groups) < 3:
        raise DfkdError(f"{what}: {len(groups)} speaker/file group(s); a clean+noise corpus needs "
                        "at least 3 (train, valid and test hold out whole groups)")
    valid = {g for g in groups if _fraction(g) < valid_fraction}
    test = {g for g in groups if valid_fraction <= _fraction(g) < valid_fraction + test_fraction}
    rest = [g for g in groups if g not in valid and g not in test]
    if not valid:
        valid = {rest.pop(0) if len(rest) > 1 else sorted(test, key=_fraction).pop()}
        test -= valid
    if not test:
        rest = [g for g in rest if g not in valid]
        test = {rest.pop(0)}
    if not set(groups) - valid - test:  # the hash held every group out: train gets one back
        donor = valid if len(valid) > 1 else test  # with >= 3 groups one of them holds two
        donor.discard(max(donor, key=_fraction))
    chosen = {"valid": valid, "test": test}.get(split)
    if chosen is None:
        chosen = set(groups) - valid - test
    return [p for p in files if _group(p) in chosen]


def source_files(spec: MixSpec, split: str) -> tuple[list[Path], list[Path], list[Path]]:
    """``(clean, noise, rir)`` files of ``split`` (impulse responses are shared by all splits)."""
    clean, noise = _audio_files(spec.clean), _audio_files(spec.noise)
    if not clean:
        raise DfkdError(f"{spec.clean}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    if not noise:
        raise DfkdError(f"{spec.noise}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    clean = split_files(clean, split, spec.valid_fraction, spec.test_fraction, str(spec.clean))
    if len({_group(p) for p in noise}) >= 3:
        noise = split_files(noise, split, spec.valid_fraction, spec.test_fraction, str(spec.noise))
    rir = _audio_files(spec.rir) if spec.rir else []
    if spec.rir and not rir:
        raise DfkdError(f"{spec.rir}: no impulse responses ({', '.join(AUDIO_EXTENSIONS)})")
    return clean, noise, rir


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``speech`` convolved with ``rir``, aligned on its direct path (the RIR's peak), same length."""
    from scipy.signal import fftconvolve

    rir = np.asarray(rir, dtype=np.float64)
    peak = int(np.argmax(np.abs(rir))) if rir.size else 0
    if rir.size == 0 or rir[peak] == 0:
        return speech.astype(np.float32)
    wet = fftconvolve(speech.astype(np.float64), rir / abs(rir[peak]))[peak:peak + speech.size]
    return wet.astype(np.float32)


def mix(clean: np.ndarray, noise: np.ndarray, rng: np.random.Generator, spec: MixSpec,
        rir: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy, target)`` from a clean segment and a noise excerpt of the same length.

    Draws the level and the SNR from ``rng`` (in that order); ``rir`` (already drawn) reverberates
    the speech first, and the target is then the reverberant speech.
    """
    level_db = rng.uniform(*spec.level_range)
    snr = rng.uniform(*spec.snr_range)
    if rir is not None:
        clean = reverberate(clean, rir)
    clean_rms = math.sqrt(float(np.mean(clean.astype(np.float64) ** 2))) if clean.size else 0.0
    if clean_rms > 0:
        clean = clean * np.float32(10 ** (level_db / 20) / clean_rms)
    noisy = clean + scale_to_snr(clean, noise, snr)
    peak = float(np.max(np.abs(noisy))) if noisy.size else 0.0
    if peak > 0.99:
        scale = np.float32(0.99 / peak)
        noisy, clean = noisy * scale, clean * scale
    return noisy.astype(np.float32), clean.astype(np.float32)


def split_rng(seed: int, split: str, epoch: int, i: int) -> np.random.Generator:
    """The generator of item ``i``: a pure function of (seed, split, epoch, i)."""
    return np.random.default_rng([int(seed), _SPLIT_STREAM[split], int(epoch), int(i)])


def draw_rir(rng: np.random.Generator, spec: MixSpec, rir_files: Sequence[Path],
             sample_rate: int) -> np.ndarray | None:
    """An impulse response with probability ``rir_prob`` (always one draw, so streams stay aligned)."""
    chance, pick = rng.random(), int(rng.integers(max(len(rir_files), 1)))
    if not rir_files or chance >= spec.rir_prob:
        return None
    return load_mono(rir_files[pick], sample_rate)


def _excerpt(audio: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    if audio.size >= length:
        start = int(rng.integers(0, audio.size - length + 1))
        return audio[start:start + length]
    return np.resize(audio, length).astype(np.float32) if audio.size else np.zeros(length, np.float32)


def _cache_key(spec: MixSpec, files: Sequence[Path], sample_rate: int) -> str:
    digest = hashlib.sha1(json.dumps(_settings(spec), sort_keys=True).encode())
    digest.update(str(sample_rate).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def mixture_test_set(root: str | os.PathLike, spec: MixSpec | None = None, sample_rate: int = 16000
                  ) -> list[tuple[str, Path, Path]]:
    """The fixed test set of a ``clean+noise`` corpus as ``(name, noisy, clean)`` files.

    Made once (seeded by ``spec.seed``) and reused while the settings and files stay the same.
    """
    root = Path(root)
    spec = (spec or mix_spec(root))
    if spec is None:
        raise DfkdError(f"{root}: not a clean+noise corpus (no {META} with layout {LAYOUT!r})")
    spec.check()
    clean_files, noise_files, rir_files = source_files(spec, "test")
    key = _cache_key(spec, clean_files + noise_files + rir_files, sample_rate)
    folder = _mixture_folder(root, key)
    count = spec.test_items or len(clean_files)
    names = [f"mix{i:04d}_{clean_files[i % len(clean_files)].stem}" for i in range(count)]
    pairs = [(n, folder / "noisy" / f"{n}.wav", folder / "clean" / f"{n}.wav") for n in names]
    if (folder / "done").is_file():
        return pairs
    for i, (name, noisy_path, clean_path) in enumerate(pairs):
        rng = split_rng(spec.seed, "test", 0, i)
        speech = load_mono(clean_files[i % len(clean_files)], sample_rate)
        if spec.test_seconds:
            speech = _excerpt(speech, int(round(spec.test_seconds * sample_rate)), rng)
        noise = _excerpt(load_mono(noise_files[int(rng.integers(len(noise_files)))], sample_rate),
                         speech.size, rng)
        rir = draw_rir(rng, spec, rir_files, sample_rate)
        noisy, target = mix(speech, noise, rng, spec, rir)
        write_audio(noisy_path, noisy, sample_rate, subtype="FLOAT")
        write_audio(clean_path, target, sample_rate, subtype="FLOAT")
    (folder / "settings.json").write_text(json.dumps(_settings(spec), indent=2) + "\n")
    (folder / "done").write_text("")
    return pairs


def _mixture_folder(root: Path, key: str) -> Path:
    """``<root>/.dfkd_mixtures/<key>``, or under ``~/.cache/dfkd/mixtures`` when ``root`` is read-only."""
    local = root / ".dfkd_mixtures" / key
    try:
        local.mkdir(parents=True, exist_ok=True)
        probe = local / ".probe"
        probe.write_text("")
        probe.unlink()
        return local
    except OSError:
        fallback = Path.home() / ".cache" / "dfkd" / "mixtures" / key
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


__all__ = ["LAYOUT", "MixSpec", "mix", "mix_corpus", "mix_spec", "reverberate", "source_files",
           "split_files", "mixture_test_set"]

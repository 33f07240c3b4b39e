"""DNS Challenge 2020 training data: noisy mixtures made on the fly from clean speech and noise.

The DNS Challenge ships clean read speech (``datasets/clean``) and noise clips (``datasets/noise``)
rather than fixed pairs; its own synthesizer mixes them at SNRs of 0-40 dB. Like most SE recipes
we mix on the fly, with a configurable SNR range (default -5..20 dB) and a seeded generator:

* training (``fixed=False``): item ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, so a
  run is reproducible while every epoch sees new crops, noises and SNRs;
* validation (``fixed=True``): the epoch is ignored, the set never changes, and ``item_key`` names
  each item so that teacher outputs can be cached.

Validation holds out whole readers: a file's group is its ``reader_NNNNN`` tag when it has one (DNS
read-speech names), else its name, and a fixed hash of the group decides (``valid_fraction``).
Noise files are held out the same way by name, so validation noises are unseen in training.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..audio import audio_info, load_mono_segment, resampled_length, scale_to_snr
from .layouts import audio_files, stable_fraction
from ..errors import DfkdError

DEFAULT_SNR_RANGE: tuple[float, float] = (-5.0, 20.0)
#: Clean speech is set to a random active level in this range (dBFS), as the DNS synthesizer does.
DEFAULT_LEVEL_RANGE: tuple[float, float] = (-35.0, -15.0)
_READER = re.compile(r"reader_(\d+)")


def dns_sources(root: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``(clean_files, noise_files)`` of a DNS training root (``clean/`` + ``noise/``, searched
    recursively; the root may also be the folder above ``datasets/``)."""
    root = Path(root)
    for base in (root, root / "datasets"):
        clean_dir, noise_dir = base / "clean", base / "noise"
        if clean_dir.is_dir() and noise_dir.is_dir():
            clean, noise = audio_files(clean_dir, recursive=True), audio_files(noise_dir, recursive=True)
            if not clean:
                raise DfkdError(f"{clean_dir}: no audio files")
            if not noise:
                raise DfkdError(f"{noise_dir}: no audio files")
            return clean, noise
    raise DfkdError(f"{root}: no DNS clean/ and noise/ folders (needed for training mixtures)")


def _group(path: Path) -> str:
    match = _READER.search(path.stem)
    return f"reader_{match.group(1)}" if match else path.stem


def holdout_files(files: Sequence[Path], split: str, valid_fraction: float) -> list[Path]:
    """Files of ``split`` ("train"/"valid") after holding out whole groups for validation."""
    groups = sorted({_group(p) for p in files})
    held = {g for g in groups if stable_fraction(g) < valid_fraction}
    if not held and len(groups) >= 2 and valid_fraction > 0:
        held = {min(groups, key=stable_fraction)}
    return [p for p in files if (_group(p) in held) == (split == "valid")]


def _crop_or_tile(path: Path, frames: int, length: int, rng: np.random.Generator,
                  sample_rate: int, cache_dir: Path | None, tile: bool) -> np.ndarray:
    """A random ``length``-sample excerpt of ``path`` (``frames`` long at ``sample_rate``).

    Short files are tiled (noise: keeps it stationary-ish) or zero-padded (speech).
    """
    if frames >= length:
        start = int(rng.integers(0, frames - length + 1))
        return load_mono_segment(path, start, start + length, sample_rate, cache_dir=cache_dir)
    audio = load_mono_segment(path, 0, frames, sample_rate, cache_dir=cache_dir)
    if tile:
        return np.resize(audio, length).astype(np.float32)
    out = np.zeros(length, dtype=np.float32)
    offset = int(rng.integers(0, length - frames + 1))
    out[offset:offset + frames] = audio
    return out


class DNSMixtureDataset(Dataset):
    """On-the-fly mixtures of clean speech and noise at random SNRs (DNS Challenge 2020 recipe).

    Args:
        clean_files: clean speech files (any rate; resampled to ``sample_rate``).
        noise_files: noise files.
        segment_seconds: length of every item.
        sample_rate: output rate.
        snr_range: SNR in dB drawn uniformly per item (global SNR over the segment).
        level_range: active level of the clean speech in dBFS, drawn uniformly per item.
        seed: base seed; item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.
        fixed: validation mode: the epoch is ignored and items never change.
        items_per_epoch: length of the dataset (default: one item per clean file).
        cache_dir: resampling cache for files not at ``sample_rate``.

    Items are ``(noisy, clean)`` float32 tensors of exactly ``segment_samples``. When the mixture
    would clip, both are scaled down together (the SNR is unchanged).
    """

    def __init__(
        self,
        clean_files: Sequence[str | os.PathLike],
        noise_files: Sequence[str | os.PathLike],
        segment_seconds: float,
        sample_rate: int = 16000,
        snr_range: tuple[float, float] = DEFAULT_SNR_RANGE,
        level_range: tuple[float, float] = DEFAULT_LEVEL_RANGE,
        seed: int = 0,
        fixed: bool = False,
        items_per_epoch: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if not clean_files or not noise_files:
            raise DfkdError("DNS mixtures need at least one clean and one noise file")
        if snr_range[0] > snr_range[1]:
            raise DfkdError(f"SNR range {snr_range}: the minimum exceeds the maximum")
        self.clean_files = [Path(p) for p in clean_files]
        self.noise_files = [Path(p) for p in noise_files]
        self.sample_rate = int(sample_rate)
        self.segment_samples = int(round(segment_seconds * sample_rate))
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))
        self.level_range = (float(level_range[0]), float(level_range[1]))
        self.seed = int(seed)
        self.fixed = bool(fixed)
        self.items = int(items_per_epoch or len(self.clean_files))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.epoch = 0
        self._frames: dict[Path, int] = {}

    @classmethod
    def from_root(cls, root: str | os.PathLike, split: str, segment_seconds: float,
                  valid_fraction: float = 0.05, **kwargs) -> "DNSMixtureDataset":
        """Train or valid mixtures from a DNS root; ``valid`` is fixed and reader-disjoint."""
        if split not in ("train", "valid"):
            raise DfkdError(f"{root}: DNS on-the-fly mixtures exist for train and valid, not {split!r}"
                            " (the DNS test sets are fixed pairs: use corpus_pairs)")
        clean, noise = dns_sources(root)
        clean = holdout_files(clean, split, valid_fraction)
        noise = holdout_files(noise, split, valid_fraction)
        kwargs.setdefault("fixed", split == "valid")
        return cls(clean, noise, segment_seconds, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's mixtures (no effect when ``fixed``)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.items

    def _length(self, path: Path) -> int:
        if path not in self._frames:
            frames, rate, _ = audio_info(path)
            self._frames[path] = resampled_length(frames, rate, self.sample_rate)
        return self._frames[path]

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, i])

    def item_key(self, i: int) -> str:
        """A key that identifies item ``i``'s content (includes the epoch unless ``fixed``)."""
        epoch = "fixed" if self.fixed else f"e{self.epoch}"
        return f"dns:{self.seed}:{epoch}:{i}"

    def _sources(self, i: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
        """Item ``i``'s generator and its drawn clean crop and (tiled) noise crop."""
        if not 0 <= i < self.items:
            raise IndexError(i)
        rng = self._rng(i)
        clean_path = self.clean_files[int(rng.integers(len(self.clean_files)))]
        noise_path = self.noise_files[int(rng.integers(len(self.noise_files)))]
        length = self.segment_samples
        clean = _crop_or_tile(clean_path, self._length(clean_path), length, rng,
                              self.sample_rate, self.cache_dir, tile=False)
        noise = _crop_or_tile(noise_path, self._length(noise_path), length, rng,
                              self.sample_rate, self.cache_dir, tile=True)
        return rng, clean, noise

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng, clean, noise = self._sources(i)
        level_db = rng.uniform(*self.level_range)
        snr = rng.uniform(*self.snr_range)
        clean_rms = math.sqrt(float(np.mean(clean.astype(np.float64) ** 2)))
        if clean_rms > 0:
            clean = clean * np.float32(10 ** (level_db / 20) / clean_rms)
        noise = scale_to_snr(clean, noise, snr)
        noisy = clean + noise
        peak = float(np.max(np.abs(noisy))) if noisy.size else 0.0
        if peak > 0.99:
            scale = np.float32(0.99 / peak)
            noisy, clean = noisy * scale, clean * scale
        return torch.from_numpy(noisy.astype(np.float32)), torch.from_numpy(clean.astype(np.float32))

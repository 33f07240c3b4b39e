"""Paired speech-enhancement data: list a corpus, check it, and serve it to training and evaluation.

* :func:`corpus_pairs` lists the ``(noisy, clean)`` pairs of a split in any supported layout
  (VoiceBank+DEMAND, DNS Challenge 2020 test sets, folder pairs, CSV/JSONL manifests; see
  :mod:`dfkd.data.layouts`).
* :func:`scan_pairs` reads every file and reports all problems at once.
* :class:`SegmentDataset` serves fixed-length training crops, :class:`UtteranceDataset` whole
  utterances for evaluation, :class:`DNSMixtureDataset` on-the-fly DNS mixtures
  (:mod:`dfkd.data.dns`); :func:`training_dataset` picks the right one for a corpus.

Audio is mono float32 at ``sample_rate`` (default 16 kHz): channels are averaged and other rates
resampled through an on-disk cache (:func:`dfkd.audio.load_mono`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..audio import audio_info, load_mono, load_mono_segment, read_audio, resampled_length
from .dns import DNSMixtureDataset, dns_sources
from .layouts import (
    CORPUS_META,
    SPLITS,
    VOICEBANK_VALID_SPEAKERS,
    Pair,
    corpus_pairs,
    detect_layout,
    speaker_of,
)
from ..errors import DfkdError

__all__ = [
    "CORPUS_META", "DNSMixtureDataset", "Pair", "SPLITS", "SegmentDataset", "UtteranceDataset",
    "VOICEBANK_VALID_SPEAKERS", "corpus_pairs", "detect_layout", "dns_sources", "pair_lengths",
    "scan_pairs", "speaker_of", "training_dataset",
]


def _length_at(path: Path, sample_rate: int) -> tuple[int, int]:
    frames, rate, _ = audio_info(path)
    return resampled_length(frames, rate, sample_rate), rate


def _length_problem(pair: Pair, noisy: tuple[int, int], clean: tuple[int, int],
                    sample_rate: int) -> str | None:
    """Mismatched lengths, allowing one sample of resampling rounding when the rates differ."""
    tolerance = 0 if noisy[1] == clean[1] else 1
    if abs(noisy[0] - clean[0]) > tolerance:
        return (f"{pair.noisy}: length mismatch with its clean partner {pair.clean}: "
                f"{noisy[0]} vs {clean[0]} samples at {sample_rate} Hz")
    return None


def pair_lengths(pairs: Sequence[Pair], sample_rate: int = 16000) -> list[int]:
    """Length of every pair at ``sample_rate`` from the file headers.

    Raises one :class:`DfkdError` listing every missing/unreadable file and length mismatch.
    """
    lengths, problems = [], []
    for pair in pairs:
        try:
            noisy, clean = _length_at(pair.noisy, sample_rate), _length_at(pair.clean, sample_rate)
        except DfkdError as err:
            problems.append(str(err))
            continue
        problem = _length_problem(pair, noisy, clean, sample_rate)
        if problem:
            problems.append(problem)
        lengths.append(min(noisy[0], clean[0]))
    if problems:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DfkdError(f"{len(problems)} problem(s) in the data:\n  " + "\n  ".join(problems[:20])
                        + more)
    return lengths


def scan_pairs(pairs: Sequence[Pair], sample_rate: int = 16000, *,
               progress: bool = True) -> list[str]:
    """Read every file of ``pairs`` and return every problem found (empty list: all good).

    Checks: missing file or partner, unreadable file, empty file, NaN/Inf samples, a silent clean
    reference (SI-SNR is undefined for it), mismatched lengths (at ``sample_rate``), duplicate pair
    names. Multi-channel files and other sample rates are not problems: they are converted
    (channels averaged, resampled). Each message starts with the file it is about.
    """
    problems: list[str] = []
    seen: dict[str, Pair] = {}
    for pair in tqdm(pairs, desc="scan", unit="pair", disable=not progress, leave=False):
        if pair.name in seen:
            problems.append(f"{pair.noisy}: pair name {pair.name!r} also used by {seen[pair.name].noisy}")
        seen.setdefault(pair.name, pair)
        info: dict[str, tuple[int, int]] = {}
        for role, path, partner in (("noisy", pair.noisy, pair.clean), ("clean", pair.clean, pair.noisy)):
            if not Path(path).is_file():
                other = "clean" if role == "noisy" else "noisy"
                problems.append(f"{path}: missing {role} file (partner of {other} file {partner})")
                continue
            try:
                audio, rate = read_audio(path)
            except DfkdError as err:
                problems.append(str(err))
                continue
            if role == "clean" and not np.any(audio):
                problems.append(f"{path}: clean reference is silent (all samples are zero)")
            info[role] = (resampled_length(audio.shape[1], rate, sample_rate), rate)
        if len(info) == 2:
            problem = _length_problem(pair, info["noisy"], info["clean"], sample_rate)
            if problem:
                problems.append(problem)
    return problems


def _tensor(audio: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))


class SegmentDataset(Dataset):
    """Fixed-length training crops of paired utterances.

    Args:
        pairs: the pairs to crop from (e.g. ``corpus_pairs(root, "train")``).
        segment_seconds: crop length; ``segment_samples = round(segment_seconds * sample_rate)``.
        sample_rate: output rate (files at other rates are resampled through the cache).
        seed: crop offsets are a pure function of ``(seed, epoch, i)``.
        vary_crops: ``True``: each epoch (:meth:`set_epoch`) draws new offsets; ``False``: the
            offsets ignore the epoch, so every epoch sees the very same clips.
        cache_dir: resampling cache (default: next to the corpus, see :func:`dfkd.audio.load_mono`).

    ``__getitem__(i)`` returns ``(noisy, clean)`` float32 tensors of exactly ``segment_samples``;
    clips shorter than that are zero-padded at the end. ``fixed`` is ``True``: an item's content is
    fully determined by :meth:`item_key`, so a teacher's outputs can be cached under that key.
    Lengths are checked at construction (one error lists every mismatch).
    """

    fixed = True

    def __init__(
        self,
        pairs: Sequence[Pair],
        segment_seconds: float,
        sample_rate: int = 16000,
        seed: int = 0,
        *,
        vary_crops: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if not pairs:
            raise DfkdError("SegmentDataset: no pairs to train on")
        if segment_seconds <= 0:
            raise DfkdError(f"segment length must be positive, got {segment_seconds} s")
        self.pairs = list(pairs)
        self.sample_rate = int(sample_rate)
        self.segment_samples = int(round(segment_seconds * sample_rate))
        self.seed = int(seed)
        self.vary_crops = bool(vary_crops)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.epoch = 0
        self.lengths = pair_lengths(self.pairs, self.sample_rate)

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (ignored when ``vary_crops`` is False)."""
        self.epoch = int(epoch)

    def crop_offset(self, i: int) -> int:
        """Start sample of item ``i``'s crop: a pure function of ``(seed, epoch, i)``."""
        room = self.lengths[i] - self.segment_samples
        if room <= 0:
            return 0
        epoch = self.epoch if self.vary_crops else 0
        return int(np.random.default_rng([self.seed, epoch, i]).integers(0, room + 1))

    def item_key(self, i: int) -> str:
        """``name@offset+length``: identifies the clip, for caching teacher outputs."""
        return f"{self.pairs[i].name}@{self.crop_offset(i)}+{self.segment_samples}"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[i]
        start = self.crop_offset(i)
        stop = min(start + self.segment_samples, self.lengths[i])
        out = []
        for path in (pair.noisy, pair.clean):
            audio = load_mono_segment(path, start, stop, self.sample_rate, cache_dir=self.cache_dir)
            clip = np.zeros(self.segment_samples, dtype=np.float32)
            clip[: len(audio)] = audio[: self.segment_samples]
            out.append(_tensor(clip))
        return out[0], out[1]


class UtteranceDataset(Dataset):
    """Whole utterances for evaluation: ``(noisy, clean, name)`` with 1-D float32 tensors.

    Noisy and clean have equal length (one sample of resampling rounding is trimmed); a real
    mismatch raises a :class:`DfkdError` naming both files.
    """

    fixed = True

    def __init__(self, pairs: Sequence[Pair], sample_rate: int = 16000, *,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.pairs = list(pairs)
        self.sample_rate = int(sample_rate)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def __len__(self) -> int:
        return len(self.pairs)

    def item_key(self, i: int) -> str:
        return self.pairs[i].name

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        pair = self.pairs[i]
        noisy_info = _length_at(pair.noisy, self.sample_rate)
        clean_info = _length_at(pair.clean, self.sample_rate)
        problem = _length_problem(pair, noisy_info, clean_info, self.sample_rate)
        if problem:
            raise DfkdError(problem)
        noisy = load_mono(pair.noisy, self.sample_rate, cache_dir=self.cache_dir)
        clean = load_mono(pair.clean, self.sample_rate, cache_dir=self.cache_dir)
        n = min(len(noisy), len(clean))
        return _tensor(noisy[:n]), _tensor(clean[:n]), pair.name


def training_dataset(
    root: str | os.PathLike,
    split: str,
    segment_seconds: float,
    sample_rate: int = 16000,
    seed: int = 0,
    **kwargs,
) -> Dataset:
    """The training/validation dataset for any corpus: DNS roots give on-the-fly
    :class:`DNSMixtureDataset` mixtures (``valid`` fixed), ``clean+noise`` corpora
    :class:`~dfkd.data.mix_dataset.MixtureDataset` ones (``valid`` fixed), other layouts :class:`SegmentDataset`
    crops of :func:`corpus_pairs` (``valid`` crops do not vary with the epoch).

    Extra keyword arguments go to the dataset (e.g. ``snr_range`` for DNS, ``vary_crops``).
    """
    if split not in ("train", "valid"):
        raise DfkdError(f"training_dataset serves train and valid, not {split!r}")
    if detect_layout(root) == "clean+noise":
        from .mix_dataset import MixtureDataset

        return MixtureDataset.from_root(root, split, segment_seconds, sample_rate=sample_rate,
                                        seed=seed, **kwargs)
    if detect_layout(root) == "dns":
        return DNSMixtureDataset.from_root(root, split, segment_seconds, sample_rate=sample_rate,
                                           seed=seed, **kwargs)
    pair_kwargs = {k: kwargs.pop(k) for k in ("valid_speakers", "valid_fraction") if k in kwargs}
    kwargs.setdefault("vary_crops", split == "train")
    return SegmentDataset(corpus_pairs(root, split, **pair_kwargs), segment_seconds, sample_rate,
                          seed, **kwargs)

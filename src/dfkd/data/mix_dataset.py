"""Training and validation mixtures of a ``clean+noise`` corpus (:mod:`dfkd.data.mixing`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DfkdError
from .dns import DNSMixtureDataset
from .mixing import MixSpec, draw_rir, mix, mix_spec, source_files, split_rng


class MixtureDataset(DNSMixtureDataset):
    """On-the-fly mixtures of a ``clean+noise`` corpus: the DNS recipe plus reverberation.

    Args:
        spec: the corpus settings (:class:`dfkd.data.mixing.MixSpec`).
        split: ``"train"`` (new mixtures every epoch) or ``"valid"`` (fixed, seeded by
            ``spec.seed``, ``spec.valid_items`` of them).
        segment_seconds: length of every item.
        sample_rate: output rate.
        seed: training seed (the validation set ignores it: ``spec.seed`` fixes it for every run).
        items_per_epoch: training items per epoch (default: one per clean file).
        cache_dir: resampling cache for files not at ``sample_rate``.

    Items are ``(noisy, target)`` float32 tensors of ``segment_samples``.
    """

    def __init__(self, spec: MixSpec, split: str, segment_seconds: float, sample_rate: int = 16000,
                 seed: int = 0, items_per_epoch: int | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        if split not in ("train", "valid"):
            raise DfkdError(f"clean+noise mixtures for training are train or valid, not {split!r} "
                            "(the test set is fixed files: dfkd.data.corpus_pairs(root, 'test'))")
        spec.check()
        clean, noise, self.rir_files = source_files(spec, split)
        fixed = split == "valid"
        if fixed:
            items = spec.valid_items or max(8, 4 * len(clean))
        else:
            items = items_per_epoch
        super().__init__(clean, noise, segment_seconds, sample_rate, spec.snr_range,
                         spec.level_range, spec.seed if fixed else seed, fixed, items, cache_dir)
        self.spec, self.split = spec, split

    @classmethod
    def from_root(cls, root: str | os.PathLike, split: str, segment_seconds: float,
                  **kwargs) -> "MixtureDataset":
        """The ``split`` mixtures of the corpus at ``root`` (its ``dfkd_corpus.json``)."""
        spec = mix_spec(root)
        if spec is None:
            raise DfkdError(f"{root}: not a clean+noise corpus")
        kwargs.pop("valid_fraction", None)  # the corpus file sets the hold-out
        return cls(spec, split, segment_seconds, **kwargs)

    def _rng(self, i: int) -> np.random.Generator:
        return split_rng(self.seed, self.split, 0 if self.fixed else self.epoch, i)

    def item_key(self, i: int) -> str:
        """A key naming item ``i``'s content (the epoch too unless ``fixed``)."""
        epoch = "fixed" if self.fixed else f"e{self.epoch}"
        return f"mix:{self.split}:{self.seed}:{epoch}:{i}"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng, clean, noise = self._sources(i)  # the DNS draw, from this split's generator
        rir = draw_rir(rng, self.spec, self.rir_files, self.sample_rate)
        noisy, target = mix(clean, noise, rng, self.spec, rir)
        return torch.from_numpy(noisy), torch.from_numpy(target)


__all__ = ["MixtureDataset"]

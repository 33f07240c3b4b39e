"""Teacher-output cache: run a frozen teacher once over a fixed training set and reuse its outputs.

Every KD step needs the teacher's output on the student's input. When the training set is made of
fixed files (:class:`dfkd.data.datasets.SegmentDataset`), those outputs can be computed once, stored on disk
and shared by every student and KD method distilled from the same teacher. Entries are keyed by a
fingerprint of the teacher's weights (not the file path, so a copied or re-saved checkpoint hits
the same entries) and by the clip (pair name + the noisy file's path, size and mtime, so an edited
corpus never reads stale outputs).

Choice for random crops: the cache holds the teacher's output on the *whole utterance*, and a
training item reads the region of its crop. This is not bit-identical to running the teacher on the
crop itself: near the crop edges the teacher saw real context instead of the crop boundary, and
globally normalised layers (gLN) saw the whole utterance's statistics; zero-padded tails of short
clips read zeros instead of the teacher's response to silence. It is the only choice that keeps a
cache useful when crops change every epoch (a per-crop cache would miss on every new offset); if
anything it gives the student a slightly better-informed target. On-the-fly mixtures (DNS) are not
fixed, so the teacher then runs inline on each batch.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from ..audio import load_mono
from ..files import atomic_write
from ..data.datasets import SegmentDataset
from ..data.layouts import Pair

CACHE_DIR_NAME = ".dfkd_teacher_cache"


def model_fingerprint(model: nn.Module) -> str:
    """Hex digest of a model's architecture, config and weights (independent of file format)."""
    model = getattr(model, "module", model)
    digest = hashlib.sha256()
    digest.update(str(getattr(model, "ARCH", type(model).__name__)).encode())
    digest.update(repr(sorted(dict(getattr(model, "config", {})).items())).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def default_cache_dir(data_root: str | os.PathLike) -> Path:
    """``<data root>/.dfkd_teacher_cache`` when writable, else ``~/.cache/dfkd/teacher``."""
    root = Path(data_root)
    root = root.parent if root.is_file() else root
    local = root / CACHE_DIR_NAME
    if os.access(local if local.is_dir() else root, os.W_OK):
        return local
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "dfkd" / "teacher"


def supports_cache(dataset: Dataset) -> bool:
    """True for fixed file-based training sets (the only kind whose teacher outputs are reusable)."""
    return isinstance(dataset, SegmentDataset) and bool(getattr(dataset, "fixed", False))


def crop_region(whole: np.ndarray, start: int, stop: int, length: int) -> np.ndarray:
    """Samples ``start:stop`` of a whole-utterance teacher output, zero-padded to ``length`` (the
    training crop's span: a zero-padded tail of a short clip reads zeros, as its input does)."""
    clip = np.zeros(length, dtype=np.float32)
    piece = np.asarray(whole[start:stop], dtype=np.float32)[:length]
    clip[: len(piece)] = piece
    return clip


class TeacherCache:
    """Whole-utterance teacher outputs as ``.npy`` files under ``<root>/<fingerprint>/<rate>/``.

    Args:
        root: cache folder (shared by all teachers; each gets its own sub-folder).
        fingerprint: :func:`model_fingerprint` of the teacher.
        sample_rate: rate of the audio the teacher ran on.
    """

    def __init__(self, root: str | os.PathLike, fingerprint: str, sample_rate: int) -> None:
        self.folder = Path(root) / fingerprint / str(int(sample_rate))
        self.sample_rate = int(sample_rate)

    def path_for(self, pair: Pair) -> Path:
        noisy = Path(pair.noisy).resolve()
        stat = noisy.stat()
        key = f"{noisy}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in pair.name)[:80]
        return self.folder / f"{safe_name}-{hashlib.sha1(key).hexdigest()[:12]}.npy"

    def missing(self, pairs: Sequence[Pair]) -> list[Pair]:
        return [pair for pair in pairs if not self.path_for(pair).is_file()]

    @torch.no_grad()
    def fill(
        self,
        teacher: nn.Module,
        pairs: Sequence[Pair],
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        progress: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ) -> int:
        """Compute and store the outputs this process is responsible for; returns how many.

        Under DDP each rank takes every ``world_size``-th missing clip; the caller then waits on
        a barrier so that all ranks see a complete cache. Writes are atomic (temp + rename).
        ``cache_dir`` is the resampling cache of the training set (so both read the same audio).
        """
        todo = self.missing(pairs)[rank::world_size]
        teacher.eval()
        for pair in tqdm(todo, desc="teacher cache", unit="clip", disable=not progress, leave=False):
            noisy = torch.from_numpy(load_mono(pair.noisy, self.sample_rate, cache_dir=cache_dir)).to(device)
            output = teacher(noisy[None])[0].float().cpu().numpy()

            def write(tmp: str, array: np.ndarray = output) -> None:
                with open(tmp, "wb") as handle:
                    np.save(handle, array)

            atomic_write(self.path_for(pair), write)
        return len(todo)

    def crop(self, pair: Pair, start: int, stop: int, length: int) -> np.ndarray:
        """Samples ``start:stop`` of the stored output, zero-padded to ``length``."""
        return crop_region(np.load(self.path_for(pair), mmap_mode="r"), start, stop, length)


class CachedTeacherDataset(Dataset):
    """A :class:`SegmentDataset` whose items also carry the cached teacher output of their crop.

    ``cache`` is anything with :meth:`TeacherCache.crop`'s signature: this cache, or a folder of
    the teacher's enhanced files (:class:`dfkd.distill.teachers.EnhancedFolder`).

    Items are ``(noisy, clean, teacher)``; ``set_epoch``, ``fixed`` and ``item_key`` pass through.
    """

    def __init__(self, base: SegmentDataset, cache) -> None:
        self.base = base
        self.cache = cache
        self.fixed = base.fixed

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def item_key(self, i: int) -> str:
        return self.base.item_key(i)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        noisy, clean = self.base[i]
        start = self.base.crop_offset(i)
        stop = min(start + self.base.segment_samples, self.base.lengths[i])
        teacher = self.cache.crop(self.base.pairs[i], start, stop, self.base.segment_samples)
        return noisy, clean, torch.from_numpy(teacher)

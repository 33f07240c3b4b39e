"""Data side of training: the datasets of a run, a step-addressable batch order, the validation set.

The batch order is a pure function of ``(seed, epoch)``: epoch ``e`` is a seeded permutation of the
training items cut into global batches (the last partial batch is dropped), and each DDP rank takes
its contiguous share of every global batch. Step ``s`` is therefore batch ``s % batches_per_epoch``
of epoch ``s // batches_per_epoch`` whatever happened before, which is what lets a killed run resume
onto exactly the batches it would have seen, and makes ``N`` processes see the same global batches
as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.datasets import training_dataset
from ..errors import DfkdError
from .config import TrainConfig


@dataclass(frozen=True)
class Position:
    """Where step ``step`` falls in the data order."""

    epoch: int
    batch: int


def batches_per_epoch(n_items: int, global_batch: int) -> int:
    return n_items // global_batch


def position(step: int, n_items: int, global_batch: int) -> Position:
    """Epoch and batch index of (0-based) step ``step``."""
    epoch, batch = divmod(step, batches_per_epoch(n_items, global_batch))
    return Position(epoch, batch)


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's share of the global batches of one epoch, from batch ``start_batch`` on.

    Args:
        n_items: size of the training set.
        global_batch: items per optimiser step over all ranks.
        seed: run seed; the permutation of epoch ``e`` is drawn from ``(seed, e)`` only.
        epoch: the epoch to serve.
        rank, world_size: this process and the number of DDP processes.
        start_batch: first batch to serve (a resumed run starts mid-epoch).
    """

    def __init__(
        self,
        n_items: int,
        global_batch: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if global_batch % world_size:
            raise DfkdError(f"batch size {global_batch} is not divisible by {world_size} processes")
        self.n_items, self.global_batch = n_items, global_batch
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    def __len__(self) -> int:
        return max(batches_per_epoch(self.n_items, self.global_batch) - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch, 1]).permutation(self.n_items)
        share = self.global_batch // self.world_size
        for batch in range(self.start_batch, batches_per_epoch(self.n_items, self.global_batch)):
            items = order[batch * self.global_batch : (batch + 1) * self.global_batch]
            yield items[self.rank * share : (self.rank + 1) * share].tolist()


def step_batches(
    dataset: Dataset,
    config: TrainConfig,
    start_step: int,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """``(step, batch)`` for every step from ``start_step`` on, epoch after epoch, forever.

    Each epoch calls ``dataset.set_epoch`` (new crops) and builds a fresh loader, so that worker
    processes get the dataset of the new epoch.
    """
    n_items = len(dataset)
    if batches_per_epoch(n_items, config.batch_size) == 0:
        raise DfkdError(
            f"the training set has {n_items} items, fewer than one batch of {config.batch_size}"
        )
    step = start_step
    while True:
        where = position(step, n_items, config.batch_size)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(where.epoch)
        sampler = EpochBatchSampler(
            n_items, config.batch_size, config.seed, where.epoch, rank, world_size, where.batch
        )
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.data.num_workers)
        for batch in loader:
            yield step, list(batch)
            step += 1


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """Training and validation datasets of the corpus (see :func:`dfkd.data.datasets.training_dataset`)."""
    data = config.data
    train = training_dataset(data.root, "train", data.segment_seconds, data.sample_rate, config.seed)
    # The validation crops are fixed whatever the run's seed, so runs are compared on one set.
    valid = training_dataset(data.root, "valid", data.valid_segment_seconds, data.sample_rate, 0)
    if len(train) == 0:
        raise DfkdError(f"{data.root}: the training split is empty")
    if len(valid) == 0:
        raise DfkdError(f"{data.root}: the validation split is empty")
    if batches_per_epoch(len(train), config.batch_size) == 0:  # before any work (teacher cache)
        raise DfkdError(
            f"{data.root}: the training set has {len(train)} items, fewer than one batch of "
            f"{config.batch_size} (lower --batch-size or add data)"
        )
    return train, valid


def evenly_spaced(n_items: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(n_items)`` (all of them if fewer)."""
    if count >= n_items:
        return list(range(n_items))
    return sorted({int(round(i * (n_items - 1) / max(count - 1, 1))) for i in range(count)})


@dataclass
class ValidationSet:
    """The fixed validation clips, held in memory: ``noisy``/``clean`` ``(clips, samples)``."""

    noisy: torch.Tensor
    clean: torch.Tensor
    keys: list[str]

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.noisy), batch_size):
            yield self.noisy[start : start + batch_size], self.clean[start : start + batch_size]


def load_validation_set(dataset: Dataset, clips: int) -> ValidationSet:
    """Read ``clips`` evenly spaced items of a fixed validation dataset into memory."""
    indices = evenly_spaced(len(dataset), clips)
    items = [dataset[i] for i in indices]
    keys = [dataset.item_key(i) if hasattr(dataset, "item_key") else str(i) for i in indices]
    # SI-SNR is undefined against a silent reference (a crop of a pause): leave such clips out
    kept = [k for k, item in enumerate(items) if torch.any(item[1])]
    if not kept:
        raise DfkdError("every validation clip has a silent clean reference")
    noisy = torch.stack([items[k][0] for k in kept])
    clean = torch.stack([items[k][1] for k in kept])
    return ValidationSet(noisy, clean, [keys[k] for k in kept])

"""Cost of one training step of a student with each KD method, relative to `none`.

Measured side by side in one run with the real training step (:meth:`dfkd.training.trainer.Trainer.train_step`:
forward, task + KD loss, backward, clipping, Adam, schedule): a `tiny` student, with the `small`
teacher's forward pass run inline, and with the teacher output read from the on-disk teacher cache
(:mod:`dfkd.distill.teacher_cache`, a crop of a stored whole-utterance output per item). Methods are
interleaved round by round and each cost is the median over rounds, so that load changes on a
shared machine hit every method alike. The default clock is this process's CPU time: with one
thread it is the step's compute, and other jobs on a shared machine barely move it (``--clock
wall`` measures elapsed time instead, the right choice on a quiet machine or with several threads).

Targets (the issue "Training and distillation"): `dfkd` <= 1.10x `spectral`; with the cache, a KD
step <= 1.15x a `none` step.

    python benchmarks/kd_step_cost.py [--arch convtasnet] [--batch-size 8] [--seconds 2]
                                      [--rounds 5] [--threads 1] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dfkd import models
from dfkd.data.layouts import Pair
from dfkd.distill.methods import KD_METHODS
from dfkd.losses import make_task_loss
from dfkd.distill.teacher_cache import TeacherCache
from dfkd.training.run import kd_loss_from_config
from dfkd.training.config import TrainConfig
from dfkd.training.batches import ValidationSet
from dfkd.training.trainer import Trainer

SR = 16000


def make_trainer(arch: str, method: str, teacher: torch.nn.Module) -> Trainer:
    config = TrainConfig()
    config.model.arch, config.model.preset, config.kd.method = arch, "tiny", method
    config.steps = 10_000
    torch.manual_seed(1)
    student = models.build(arch, "tiny")
    kd = kd_loss_from_config(config)
    empty = ValidationSet(torch.zeros(1, SR), torch.zeros(1, SR), ["-"])
    return Trainer(config, student, kd, make_task_loss("sisnr"), teacher if kd.needs_teacher else None,
                   None, empty, Path(tempfile.gettempdir()), torch.device("cpu"))


def build_cache(folder: Path, batch: int, samples: int) -> tuple[TeacherCache, list[Pair]]:
    """A teacher cache holding one 3x-longer 'utterance' output per batch item."""
    pairs = []
    for i in range(batch):
        wav = folder / f"clip{i}.wav"
        sf.write(wav, np.zeros(16, dtype=np.float32), SR)
        pairs.append(Pair(f"clip{i}", wav, wav))
    cache = TeacherCache(folder / "cache", "bench", SR)
    for pair in pairs:
        path = cache.path_for(pair)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, (0.1 * np.random.randn(3 * samples)).astype(np.float32))
    return cache, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="convtasnet", choices=models.ARCHITECTURES)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: stable timings on a shared machine)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="cpu: process CPU time (robust on a shared machine); wall: elapsed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    samples = int(args.seconds * SR)
    gen = torch.Generator().manual_seed(0)
    noisy = 0.1 * torch.randn(args.batch_size, samples, generator=gen)
    clean = 0.1 * torch.randn(args.batch_size, samples, generator=gen)
    teacher = models.build(args.arch, "small").eval().requires_grad_(False)
    methods = list(KD_METHODS)
    variants = [(m, False) for m in methods] + [(m, True) for m in methods if m != "none"]
    trainers = {m: make_trainer(args.arch, m, teacher) for m in methods}

    with tempfile.TemporaryDirectory() as tmp:
        cache, pairs = build_cache(Path(tmp), args.batch_size, samples)

        def step(method: str, cached: bool) -> float:
            start = clock()
            teacher_out = None
            if cached:  # what CachedTeacherDataset does per item: read the crop of the stored output
                teacher_out = torch.stack([
                    torch.from_numpy(cache.crop(p, samples, 2 * samples, samples)) for p in pairs
                ])
            trainers[method].train_step(noisy, clean, teacher_out)
            return clock() - start

        for variant in variants:  # warm-up (allocator, oneDNN kernels)
            step(*variant)
        times: dict[tuple[str, bool], list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                times[variant].append(step(*variant))

    median = {v: statistics.median(t) for v, t in times.items()}
    base = median[("none", False)]
    print(f"{args.arch}: tiny student ({models.count_params(trainers['none'].model):,} params), "
          f"small teacher ({models.count_params(teacher):,} params), batch {args.batch_size} x "
          f"{args.seconds:g} s, {args.threads} thread(s), {args.clock} clock, median of {args.rounds} rounds")
    print(f"{'method':10s} {'inline teacher':>22s} {'teacher cache':>22s}")
    for method in methods:
        inline = median[(method, False)]
        row = f"{method:10s} {inline * 1e3:9.1f} ms {inline / base:6.2f}x"
        if (method, True) in median:
            cached = median[(method, True)]
            row += f"   {cached * 1e3:9.1f} ms {cached / base:6.2f}x"
        print(row)
    dfkd_vs_spectral = median[("dfkd", False)] / median[("spectral", False)]
    worst_cached = max(median[(m, True)] for m in methods if m != "none") / base
    print(f"dfkd / spectral (inline teacher): {dfkd_vs_spectral:.3f}x  (target <= 1.10x: "
          f"{'met' if dfkd_vs_spectral <= 1.10 else 'MISSED'})")
    print(f"slowest cached KD step / none:    {worst_cached:.3f}x  (target <= 1.15x: "
          f"{'met' if worst_cached <= 1.15 else 'MISSED'})")


if __name__ == "__main__":
    main()

"""Where a study student's training time goes, and what the speed-ups bought, measured side by side.

For each architecture's `micro` student (the converged study's, configs/study.yaml) on one thread,
with the study's batch (8 x 1 s), this prints per optimiser step:

* **data**: one batch of random crops read by the training dataset from a corpus on disk;
* **step**: the real training step (:meth:`dfkd.training.trainer.Trainer.train_step`: forward,
  SI-SNR task loss, backward, clipping, AdamW), with the teacher output given (the teacher cache);
  for Conv-TasNet and DPTNet both with the plain ``ConvTranspose1d`` decoder (before) and the
  matmul + overlap-add decoder (after, :func:`dfkd.models.layers.overlap_add_decode`);
* **kd**: what the `dfkd` KD term adds to that step;
* **valid**: the study's validation (64 clips x 4 s every 500 steps) spread over those steps;
* **teacher**: the `small` teacher's forward pass over one 3 s utterance of a length not seen
  before (what filling the teacher cache, scoring a test set and `dfkd enhance` do: every file has
  its own length, and PyTorch's ConvTranspose1d sets itself up anew for each), before and after
  the decoder change;
* ``--compile``: the step under ``torch.compile`` (compiles for a minute per model first).

Every variant is timed in interleaved rounds and reported as the median, by the process's CPU
time (one thread: the step's compute; other jobs on a shared machine barely move it).

    python benchmarks/train_step_profile.py [--arch dptnet] [--rounds 7] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from dfkd import SAMPLE_RATE, models
from dfkd.losses import make_task_loss
from dfkd.training.batches import ValidationSet
from dfkd.training.config import TrainConfig
from dfkd.training.run import kd_loss_from_config
from dfkd.training.trainer import Trainer

BATCH, SECONDS = 8, 1.0  # configs/study.yaml
VALID_CLIPS, VALID_SECONDS, VALID_EVERY = 64, 4.0, 500


def set_overlap_add(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    for module in model.modules():
        if hasattr(module, "overlap_add"):
            module.overlap_add = enabled and module.kernel_divisible
    return model


def make_trainer(arch: str, method: str, overlap_add: bool, preset: str = "micro") -> Trainer:
    config = TrainConfig()
    config.model.arch, config.model.preset, config.kd.method = arch, preset, method
    config.steps = 10_000
    torch.manual_seed(1)
    student = set_overlap_add(models.build(arch, preset), overlap_add)
    empty = ValidationSet(torch.zeros(1, SAMPLE_RATE), torch.zeros(1, SAMPLE_RATE), ["-"])
    return Trainer(config, student, kd_loss_from_config(config), make_task_loss("sisnr"), None,
                   None, empty, Path(tempfile.gettempdir()), torch.device("cpu"))


def has_free_decoder(arch: str) -> bool:
    return any(hasattr(m, "overlap_add") and m.overlap_add for m in models.build(arch, "micro").modules())


def corpus_batches(folder: Path) -> Callable[[], object]:
    """A function returning one training batch read from a small on-disk demo corpus."""
    from dfkd.data.demo.build import DemoSettings, build_demo_corpus
    from dfkd.training.batches import build_datasets

    build_demo_corpus(folder, DemoSettings(minutes=0.5, valid_minutes=0.1, test_minutes=0.1,
                                           synthetic=True), progress=False, log=lambda _: None)
    config = TrainConfig()
    config.data.root, config.data.segment_seconds = str(folder), SECONDS
    train_set, _ = build_datasets(config)
    order = iter(range(10**9))

    def batch():
        items = [train_set[next(order) % len(train_set)] for _ in range(BATCH)]
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", choices=models.ARCHITECTURES,
                        help="architecture(s) to profile (default: all three)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.process_time
    archs = args.arch or list(models.ARCHITECTURES)
    samples = int(SECONDS * SAMPLE_RATE)
    gen = torch.Generator().manual_seed(0)
    noisy = 0.1 * torch.randn(BATCH, samples, generator=gen)
    clean = 0.1 * torch.randn(BATCH, samples, generator=gen)
    teacher_out = clean + 0.01 * torch.randn(BATCH, samples, generator=gen)
    valid_noisy = 0.1 * torch.randn(8, int(VALID_SECONDS * SAMPLE_RATE), generator=gen)

    with tempfile.TemporaryDirectory() as tmp:
        read_batch = corpus_batches(Path(tmp) / "corpus")
        print(f"micro students, batch {BATCH} x {SECONDS:g} s, 1 thread, CPU time, median of "
              f"{args.rounds} rounds; ms per optimiser step")
        header = f"{'arch':11s} {'data':>6s} {'step before':>12s} {'step after':>11s} {'ratio':>6s} " \
                 f"{'+kd dfkd':>9s} {'valid':>6s} {'teacher before':>15s} {'after':>7s} {'ratio':>6s}" \
                 + (f" {'compiled':>9s} {'ratio':>6s}" if args.compile else "")
        print(header)
        for arch in archs:
            variants: dict[str, Callable[[], None]] = {}
            before = make_trainer(arch, "none", overlap_add=False)
            after = make_trainer(arch, "none", overlap_add=True)
            kd = make_trainer(arch, "dfkd", overlap_add=True)
            variants["data"] = read_batch
            variants["before"] = lambda: before.train_step(noisy, clean, None)
            variants["after"] = lambda: after.train_step(noisy, clean, None)
            variants["kd"] = lambda: kd.train_step(noisy, clean, teacher_out)

            def validate(model=after.model) -> None:
                with torch.no_grad():
                    for _ in range(VALID_CLIPS // len(valid_noisy)):
                        model(valid_noisy)

            variants["valid"] = validate
            teachers = {flag: set_overlap_add(models.build(arch, "small").eval(), flag)
                        for flag in (False, True)}
            fresh_length = iter(range(3 * SAMPLE_RATE, 10**9, 37))
            for flag, teacher in teachers.items():
                def forward(teacher=teacher) -> None:
                    with torch.no_grad():
                        teacher(0.1 * torch.randn(1, next(fresh_length), generator=gen))

                variants[f"teacher-{flag}"] = forward
            if args.compile:
                compiled = make_trainer(arch, "none", overlap_add=True)
                compiled.model = torch.compile(compiled.model)
                variants["compiled"] = lambda: compiled.train_step(noisy, clean, None)
            for run in variants.values():  # warm-up (allocator, oneDNN kernels, compilation)
                run()
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, run in variants.items():
                    start = clock()
                    run()
                    times[name].append(clock() - start)
            ms = {name: 1e3 * statistics.median(t) for name, t in times.items()}
            valid_per_step = ms["valid"] / (VALID_EVERY)
            ratio = ms["before"] / ms["after"]
            row = (f"{arch:11s} {ms['data']:6.1f} {ms['before']:12.1f} {ms['after']:11.1f} "
                   f"{ratio if has_free_decoder(arch) else float('nan'):5.2f}x "
                   f"{ms['kd'] - ms['after']:9.1f} {valid_per_step:6.2f} "
                   f"{ms['teacher-False']:15.1f} {ms['teacher-True']:7.1f} "
                   f"{ms['teacher-False'] / ms['teacher-True']:5.2f}x")
            if args.compile:
                row += f" {ms['compiled']:9.1f} {ms['after'] / ms['compiled']:5.2f}x"
            print(row)
        print("ratio = step before / step after (nan: DCCRN has no ConvTranspose1d decoder); "
              "valid = one validation / 500 steps; data, kd and valid add to the step; teacher = one "
              "`small` teacher forward of a 3 s utterance of a new length")


if __name__ == "__main__":
    main()

"""Why a KD method helps a student or not: each loss term's share of the student's gradient.

The converged study (issue #10) asks, where DFKD does not win, for measurements of *why*. This
script takes one student state and the KD runs of a grid (their ``config.yaml``: method, lambda,
options, teacher, data) and measures, on the same training batches for every method, what each
KD term asks of that student:

- ``ratio``: lambda ||grad L_KD|| / ||grad L_task|| -- how much of the update the KD term is
  (method.md aims for 0.1-0.5; the trainer logs the same number as ``grad_ratio``);
- ``cos``: the cosine between grad L_KD and grad L_task -- whether the KD term points anywhere the
  task loss does not (near 1: it only rescales the task's step; near 0: a new direction; below
  0: it pulls against the task);
- for ``dfkd``: the low band's share ||grad L_low|| / (||grad L_low|| + ||grad L_high||), the
  cosine between the two bands' gradients, and the median crossover the adapter picked (Hz).

Each number is the mean over batches with its standard error. Read a method's ``ratio`` at its own
student (its run's best.pt, or the ratio its trainer logged: the grid's sweep table): the
level-sensitive terms (``output``, ``spectral``, ``subband``) measured at another method's student
mostly see that student's arbitrary SI-SNR output level (measured: ``output`` at lambda 600 is 0.03
of the task along its own training, 1.4 at a converged ``dfkd`` student). The teacher runs on the batch's
crops here (the study's runs read crops of its whole-utterance output from the teacher cache:
the same targets up to the crop's edges).

    python benchmarks/kd_gradient_share.py --student RUN/best.pt [--student init] \\
        --runs GRID/runs/dptnet/*/lam*-seed1-8000steps-* [--batches 8] [--threads 1] [--json OUT]

``--student init`` is the student freshly initialised with the first run's seed (as training
starts it); a checkpoint is any student state, e.g. the converged ``none`` run's best.pt.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from pathlib import Path

import torch

from dfkd import models
from dfkd.checkpoint import load_model
from dfkd.distill.adapter import bin_to_hz
from dfkd.distill.methods import DfkdKD, KDLoss
from dfkd.losses import make_task_loss
from dfkd.training.batches import build_datasets, step_batches
from dfkd.training.config import TrainConfig, from_dict, load_yaml
from dfkd.training.run import kd_loss_from_config, load_teacher

SR = 16000


def flat_gradient(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """d loss / d params as one vector (zeros where a parameter does not take part)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params)])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm() + 1e-20))


def mean_se(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    se = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else math.nan
    return statistics.fmean(finite), se


def read_run(folder: Path) -> tuple[str, TrainConfig]:
    """The run's label (its method folder, e.g. ``dfkd-rolloff``) and its training config."""
    config = from_dict(load_yaml(folder / "config.yaml"), source=str(folder / "config.yaml"))
    return folder.parent.name, config


def student_state(spec: str, config: TrainConfig) -> torch.nn.Module:
    if spec == "init":  # as run_training builds it: seeded, then built
        torch.manual_seed(config.seed)
        return models.build(config.model.arch, config.model.preset, **config.model.overrides)
    return load_model(spec)


def measure(student: torch.nn.Module, kd: KDLoss, teacher: torch.nn.Module, task_loss,
            batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, tuple[float, float]]:
    """The gradient shares of one KD term at one student state, mean and s.e. over batches."""
    params = [p for p in student.parameters() if p.requires_grad]
    rows: dict[str, list[float]] = {"ratio": [], "cos": []}
    if isinstance(kd, DfkdKD):
        rows.update(low_share=[], band_cos=[], crossover_hz=[])
    student.train()
    for noisy, clean in batches:
        with torch.no_grad():
            target = teacher(noisy)
        estimate = student(noisy)
        task = flat_gradient(task_loss(estimate, clean), params)
        if isinstance(kd, DfkdKD):
            low, high, bins = kd.band_losses(estimate, target, clean)
            g_low, g_high = flat_gradient(low, params), flat_gradient(high, params)
            g_kd = kd.weight * (g_low + g_high)
            rows["low_share"].append(float(g_low.norm() / (g_low.norm() + g_high.norm() + 1e-20)))
            rows["band_cos"].append(cosine(g_low, g_high))
            rows["crossover_hz"].append(float(bin_to_hz(bins).median()) if bins.numel() else math.nan)
        else:
            g_kd = kd.weight * flat_gradient(kd(estimate, target, clean).loss, params)
        rows["ratio"].append(float(g_kd.norm() / (task.norm() + 1e-20)))
        rows["cos"].append(cosine(g_kd, task))
    return {name: mean_se(values) for name, values in rows.items()}


def fmt(value: tuple[float, float], digits: int = 3) -> str:
    mean, se = value
    return f"{mean:.{digits}f} ± {se:.{digits}f}" if math.isfinite(se) else f"{mean:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True,
                        help="KD run folders (config.yaml); `none` runs are skipped")
    parser.add_argument("--student", action="append", required=True,
                        help="a student checkpoint, or `init` (repeatable)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    runs = [read_run(folder) for folder in args.runs]
    runs = [(label, config) for label, config in runs if config.kd.method != "none"]
    if not runs:
        parser.error("no KD run among --runs (every one is `none`)")
    first = runs[0][1]
    train, _ = build_datasets(first)  # every run of a grid trains on the same data
    batches = [(b[0], b[1]) for _, b in itertools.islice(step_batches(train, first, 0), args.batches)]
    teachers: dict[str, torch.nn.Module] = {}
    results: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    print(f"{first.model.arch} {first.model.preset} student, {len(batches)} training batches of "
          f"{first.batch_size} x {first.data.segment_seconds:g} s; mean ± s.e. over batches")
    for spec in args.student:
        student = student_state(spec, first)
        results[spec] = {}
        print(f"\nstudent: {spec}")
        print(f"{'run':18s} {'lambda':>7s} {'lambda*|gKD|/|gtask|':>22s} {'cos(gKD, gtask)':>17s}"
              f" {'low band share':>16s} {'cos(glow, ghigh)':>17s} {'crossover Hz':>14s}")
        for label, config in runs:
            if config.kd.teacher not in teachers:
                teachers[config.kd.teacher] = load_teacher(config.kd.teacher, SR).model
            kd = kd_loss_from_config(config)
            numbers = measure(student, kd, teachers[config.kd.teacher], make_task_loss(config.task_loss),
                              batches)
            results[spec][label] = numbers
            band = (f" {fmt(numbers['low_share']):>16s} {fmt(numbers['band_cos']):>17s}"
                    f" {fmt(numbers['crossover_hz'], 0):>14s}" if "low_share" in numbers else "")
            print(f"{label:18s} {kd.weight:7g} {fmt(numbers['ratio']):>22s} {fmt(numbers['cos']):>17s}{band}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

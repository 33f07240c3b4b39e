"""Validation curves of the grid's final runs, averaged over seeds (for ``plots/validation.png``).

Issue #10 asks to *show* that the students converged: the validation SI-SNRi (SI-SNR when a run
did not log the improvement) against the training step, of ``none``, the best baseline and every
DFKD variant. Each run's trainer writes them to ``history.json`` as ``valid`` records with
``step`` and ``si_snri`` / ``si_snr``. Pure functions on the parsed histories.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

# preferred first: the improvement is what the table ranks by; SI-SNR is what every trainer logs
CURVE_METRICS: tuple[str, ...] = ("si_snri", "si_snr")


def read_history(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``history.json``; ``None`` when it is missing or unreadable (what only reports and
    figures read is not worth failing a grid for)."""
    path = Path(run_dir) / "history.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def validation_points(history: Mapping[str, Any], metric: str) -> dict[int, float]:
    """step -> finite validation ``metric`` of one run's ``history.json``."""
    points = {}
    for record in history.get("valid", []):
        value = record.get(metric)
        if value is not None and record.get("step") is not None and math.isfinite(float(value)):
            points[int(record["step"])] = float(value)
    return points


def mean_curve(histories: Sequence[Mapping[str, Any]], metrics: Sequence[str] = CURVE_METRICS
               ) -> tuple[str, list[int], list[float]] | None:
    """(metric, steps, mean over the runs) at the steps every run validated at.

    The metric is the first of ``metrics`` that every run logged; only steps common to all runs
    are kept, so a seed that validated once more does not bend the mean at the end. ``None``
    when the runs share no metric or no step.
    """
    if not histories:
        return None
    for metric in metrics:
        per_run = [validation_points(h, metric) for h in histories]
        if not all(per_run):
            continue
        steps = sorted(set.intersection(*(set(p) for p in per_run)))
        if steps:
            return metric, steps, [float(np.mean([p[s] for p in per_run])) for s in steps]
    return None


def late_gradient_ratio(history: Mapping[str, Any], fraction: float = 0.5) -> float | None:
    """Median of the trainer's ``grad_ratio`` (lambda ||grad L_KD|| / ||grad L_task||, method.md)
    over the last ``fraction`` of a run's training steps; ``None`` when it logged none there.

    Part of the study's answer to *why* a KD method does or does not help (issue #10): a KD term
    whose gradient is a few percent of the task's at its chosen lambda barely changes the student.
    """
    records = [r for r in history.get("train", []) if r.get("step") is not None]
    if not records:
        return None
    start = (1.0 - fraction) * max(int(r["step"]) for r in records)
    ratios = [float(r["grad_ratio"]) for r in records
              if int(r["step"]) > start and r.get("grad_ratio") is not None
              and math.isfinite(float(r["grad_ratio"]))]
    return float(np.median(ratios)) if ratios else None

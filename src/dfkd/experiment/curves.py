"""Validation curves of the grid's final runs, averaged over seeds (for ``plots/validation.png``).

Issue #10 asks to *show* that the students converged: the validation SI-SNRi (SI-SNR when a run
did not log the improvement) against the training step, of ``none``, the best baseline and every
DFKD variant. Each run's trainer writes them to ``history.json`` as ``valid`` records with
``step`` and ``si_snri`` / ``si_snr``. Pure functions on the parsed histories.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

# preferred first: the improvement is what the table ranks by; SI-SNR is what every trainer logs
CURVE_METRICS: tuple[str, ...] = ("si_snri", "si_snr")


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

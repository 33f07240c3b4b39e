"""Is a difference between two rows of the table more than noise? Paired tests over clips and seeds.

Two rows of one architecture (a KD method against ``none`` or against the best baseline) are
compared in two ways, both paired:

* **over clips**: each row's per-clip scores averaged over its seeds, then the per-clip
  differences (:func:`dfkd.experiment.results.paired_difference`: mean, standard error, clips
  better) with a Wilcoxon signed-rank p-value and a paired t-test p-value;
* **over seeds**: each seed's mean over the clips, minus the other row's *same* seed (same seed =
  same initialisation and data order for both rows, so the difference is about the method): mean ±
  std over the seeds and how many seeds favour the row.

Why Wilcoxon is the p-value the report shows: per-clip differences of SE models are not normal
(a few clips where one student fails or succeeds badly give heavy tails), and the signed-rank test
only assumes they are symmetric about their median; the paired t-test p-value is kept beside it in
``results.json`` for readers used to it. Both are two-sided. The clip test says whether the
difference is resolvable on this test set; the seed spread says whether it would survive another
draw of the training randomness, which the clip test cannot see: a method is only said to win
when both agree.

Pure functions on plain data (per-clip score mappings, :class:`RunRecord` lists).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

# the level under which the report calls a difference significant (two-sided)
ALPHA = 0.05


def wilcoxon_p(diffs: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; NaN for fewer than 2.

    All differences zero (two identical rows) is "no evidence of a difference": p = 1, where
    scipy would warn and return NaN. Zero differences are dropped (``zero_method="wilcox"``, the
    test's textbook form), as a clip scored identically says nothing about the sign.
    """
    values = np.asarray(diffs, dtype=np.float64)
    if values.size < 2:
        return math.nan
    if not np.any(values != 0.0):
        return 1.0
    with warnings.catch_warnings():  # few non-zero differences: scipy warns, the p-value stands
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(values, zero_method="wilcox").pvalue)


def paired_t_p(diffs: Sequence[float]) -> float:
    """Two-sided one-sample t-test p-value of paired differences against 0; NaN for fewer than 2.

    Constant differences have no spread: p = 1 when they are all zero, 0 otherwise (every clip
    moved by the same amount is as certain as a difference gets).
    """
    values = np.asarray(diffs, dtype=np.float64)
    if values.size < 2:
        return math.nan
    # equal up to rounding (a shift of exactly +0.3 dB on every clip): the t statistic is 0/0
    if np.allclose(values, values[0], rtol=1e-9, atol=1e-12):
        return 1.0 if abs(values[0]) <= 1e-12 else 0.0
    return float(stats.ttest_1samp(values, 0.0).pvalue)


def clip_tests(model: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """The p-values of ``model - baseline`` over the clips both scored."""
    names = sorted(set(model) & set(baseline))
    diffs = [model[n] - baseline[n] for n in names]
    return {"p_wilcoxon": wilcoxon_p(diffs), "p_t": paired_t_p(diffs)}


def seed_paired(model: Sequence[Any], baseline: Sequence[Any], metric: str) -> dict[str, Any]:
    """Per seed both rows have, mean over their common clips of ``model - baseline``.

    Args:
        model, baseline: :class:`~dfkd.experiment.results.RunRecord` lists of the two rows.
        metric: the metric compared.

    Returns ``{"seeds": [...], "per_seed": [...], "mean", "std", "better"}``; ``seeds`` is empty
    (and the numbers NaN) when the rows share no seed, e.g. a pretrained teacher.
    """
    base = {r.seed: r for r in baseline if r.seed is not None}
    seeds, per_seed = [], []
    for record in sorted((r for r in model if r.seed in base), key=lambda r: r.seed):
        other = base[record.seed]
        common = [n for n, s in record.scores.items() if metric in s and metric in other.scores.get(n, {})]
        if common:
            seeds.append(record.seed)
            per_seed.append(float(np.mean([record.scores[n][metric] - other.scores[n][metric]
                                           for n in common])))
    return {
        "seeds": seeds, "per_seed": per_seed,
        "mean": float(np.mean(per_seed)) if per_seed else math.nan,
        "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else math.nan,
        "better": int(sum(d > 0 for d in per_seed)),
    }


def is_significant_gain(diff: Mapping[str, Any], alpha: float = ALPHA) -> bool:
    """A comparison entry says the row is better: positive mean, Wilcoxon p < ``alpha`` over
    clips, and (when the rows share seeds) more than half of the seeds favour it."""
    p = diff.get("p_wilcoxon")
    if not diff.get("clips") or diff.get("mean") is None or not diff["mean"] > 0:
        return False
    if p is None or not math.isfinite(p) or p >= alpha:
        return False
    seeds = diff.get("seeds") or {}
    n = len(seeds.get("seeds", []))
    return n == 0 or seeds.get("better", 0) * 2 > n

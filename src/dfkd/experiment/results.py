"""The results of a comparison grid: one table, the teacher's lead, paired per-clip differences.

Input: one :class:`RunRecord` per evaluated model and seed (the per-clip scores that
:func:`dfkd.evaluation.evaluate.evaluate_model` wrote to ``per_file.csv``, plus size and provenance).
Output (:func:`build_results`, written by :func:`dfkd.experiment.tables.write_results` as
``results.md``, ``results.csv`` and ``results.json``):

* one row per model (architecture x teacher / student method), the noisy input first, each metric
  as mean ± std *over seeds* (each seed's value is its mean over the test clips), parameters, MACs
  per second of audio and CPU real-time factor; the best student per architecture marked;
* the teacher's lead over the ``none`` student in SI-SNRi per architecture, against the 2 dB that
  ``docs/method.md`` asks for (distillation cannot pass on what the teacher does not know);
* paired per-clip differences of each model against ``none`` (mean, standard error, clips
  better): with few seeds, the mean over seeds hides whether a 0.1 dB gain is more than noise;
  pairing the same clips removes the clip-to-clip spread from the comparison;
* the same against the **best baseline** (the best student by the rank metric among the rows whose
  method is not DFKD): beating ``none`` is not enough, DFKD must beat the other KD methods; each
  comparison carries its significance tests over clips and its spread over seeds
  (:mod:`dfkd.experiment.significance`);
* the chosen KD weight (lambda) of each method and its validation sweep;
* a line saying which seeds, dates and machines the numbers come from.

Pure functions on plain data, so the table can be tested on fabricated records.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import DfkdError
from .significance import clip_tests, seed_paired


# Table columns, in the field's usual order (method.md, "What to report and plot").
TABLE_METRICS: tuple[str, ...] = (
    "pesq_wb", "pesq_nb", "stoi", "estoi", "si_snr", "si_snri", "csig", "cbak", "covl",
)
# The few metrics the markdown's paired-difference table shows (results.json holds all of them).
PAIRED_METRICS: tuple[str, ...] = ("si_snri", "pesq_wb", "estoi")
TEACHER = "teacher"
BASELINE = "none"
NOISY = "noisy"
LEAD_TARGET_DB = 2.0  # method.md: each teacher must lead its `none` student by >= 2 dB SI-SNRi
# issue #10: a student has converged when the last 20 % of its steps gained less than this
CONVERGED_GAIN_DB = 0.1
LATE_FRACTION = 0.2


@dataclass
class RunRecord:
    """One evaluated model (one seed) of the grid.

    Attributes:
        arch: architecture name.
        model: row label: ``teacher``, ``none`` or a KD method variant (``dfkd``, ``dfkd-fixed``...).
        seed: training seed (``None`` for a pretrained teacher whose seed is not known).
        scores: clip name -> metric -> value (the enhanced audio).
        noisy_scores: clip name -> metric -> value of the noisy input (for the first row).
        preset: model preset (``small``, ``tiny``...).
        params, macs, rtf: parameters, MACs per second of audio, CPU real-time factor.
        kd_weight: the lambda the run was trained with (``None`` for teachers and ``none``).
        steps: training steps.
        finished: ISO date/time the run's evaluation was finished.
        machine: one line describing where the run was trained.
        source: where the model came from (run folder or pretrained checkpoint).
        pretrained: the model is a pretrained checkpoint, not trained by this grid.
        late_gain_db: validation SI-SNR gained over the run's last 20 % of steps
            (:func:`late_validation_gain`; ``None`` when its history does not tell).
    """

    arch: str
    model: str
    seed: int | None
    scores: dict[str, dict[str, float]]
    noisy_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    preset: str = ""
    params: int | None = None
    macs: int | None = None
    rtf: float | None = None
    kd_weight: float | None = None
    steps: int | None = None
    finished: str | None = None
    machine: str | None = None
    source: str | None = None
    pretrained: bool = False
    late_gain_db: float | None = None


def late_validation_gain(history: Mapping[str, Any], fraction: float = LATE_FRACTION) -> float | None:
    """Validation SI-SNR at the last validation minus at the last one at or before
    ``(1 - fraction)`` of the run's steps, from a run's ``history.json`` (``None`` if it has no
    such pair): below :data:`CONVERGED_GAIN_DB` the run counts as converged at its schedule."""
    valid = [(int(v["step"]), float(v["si_snr"])) for v in history.get("valid", [])
             if v.get("si_snr") is not None and math.isfinite(float(v["si_snr"]))]
    if len(valid) < 2:
        return None
    last_step, last = valid[-1]
    earlier = [score for step, score in valid if step <= (1 - fraction) * last_step]
    return last - earlier[-1] if earlier else None


@dataclass
class Row:
    """One row of the table: a model aggregated over its seeds."""

    arch: str
    model: str
    preset: str = ""
    seeds: list[int | None] = field(default_factory=list)
    kd_weight: float | None = None
    params: int | None = None
    macs: int | None = None
    rtf: float | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    best: bool = False

    def mean(self, metric: str) -> float | None:
        entry = self.metrics.get(metric)
        return None if entry is None else entry["mean"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch, "model": self.model, "preset": self.preset, "seeds": self.seeds,
            "kd_weight": self.kd_weight, "params": self.params, "macs_per_second": self.macs,
            "rtf": self.rtf, "best_student": self.best, "metrics": self.metrics,
        }


@dataclass
class Results:
    """Everything the report shows; :meth:`to_dict` is ``results.json``."""

    metrics: list[str]
    rows: list[Row]
    teacher_lead: dict[str, dict[str, Any]]
    paired: dict[str, dict[str, dict[str, dict[str, float]]]]
    sweeps: dict[str, dict[str, dict[str, Any]]]
    provenance: str
    rank_metric: str = "si_snri"
    meta: dict[str, Any] = field(default_factory=dict)
    # arch -> the best non-DFKD student, and every other row's comparison against it
    best_baseline: dict[str, str] = field(default_factory=dict)
    paired_best: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(default_factory=dict)
    # model row -> its KD method (``dfkd`` rows are the method under test)
    methods: dict[str, str] = field(default_factory=dict)

    def is_dfkd(self, model: str) -> bool:
        return is_dfkd(model, self.methods)

    def architectures(self) -> list[str]:
        return list(dict.fromkeys(row.arch for row in self.rows if row.model != NOISY))

    def row(self, arch: str, model: str) -> Row | None:
        return next((r for r in self.rows if r.arch == arch and r.model == model), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics, "rank_metric": self.rank_metric,
            "rows": [row.to_dict() for row in self.rows], "teacher_lead": self.teacher_lead,
            "paired_vs_none": self.paired, "best_baseline": self.best_baseline,
            "paired_vs_best_baseline": self.paired_best, "kd_weight_sweeps": self.sweeps,
            "provenance": self.provenance, "meta": self.meta,
        }


# ------------------------------------------------------------------------------------- reading
def read_per_file_csv(path: str | os.PathLike) -> tuple[dict, dict]:
    """``per_file.csv`` of :mod:`dfkd.evaluation.evaluate` -> (clip -> scores, clip -> noisy input's scores)."""
    path = Path(path)
    if not path.is_file():
        raise DfkdError(f"{path}: per-clip scores not found (was the run evaluated?)")
    scores: dict[str, dict[str, float]] = {}
    noisy: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line in csv.DictReader(handle):
            name = line.pop("name")
            clip, clip_noisy = {}, {}
            for key, value in line.items():
                if value in ("", None):  # a metric that failed on this clip
                    continue
                if key.startswith("noisy_"):
                    clip_noisy[key[len("noisy_"):]] = float(value)
                else:
                    clip[key] = float(value)
            scores[name] = clip
            if clip_noisy:
                noisy[name] = clip_noisy
    return scores, noisy


# ------------------------------------------------------------------------------------ numbers
def _sample_std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def clip_means(records: Sequence[RunRecord], metric: str) -> dict[str, float]:
    """Per clip, the mean over the records (seeds) that scored it; clips scored by all of them only.

    Averaging a model's seeds per clip first, then pairing clips, keeps the paired comparison about
    the method and not about which seed happened to be drawn.
    """
    common = set.intersection(*(
        {name for name, s in r.scores.items() if metric in s} for r in records
    )) if records else set()
    return {name: float(np.mean([r.scores[name][metric] for r in records])) for name in sorted(common)}


def paired_difference(model: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, float]:
    """Mean per-clip difference ``model - baseline``, its standard error and the clips better/worse."""
    names = sorted(set(model) & set(baseline))
    if not names:
        return {"mean": math.nan, "se": math.nan, "better": 0, "worse": 0, "clips": 0}
    diffs = np.array([model[n] - baseline[n] for n in names], dtype=np.float64)
    se = float(np.std(diffs, ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan
    return {
        "mean": float(diffs.mean()), "se": se, "better": int((diffs > 0).sum()),
        "worse": int((diffs < 0).sum()), "clips": len(diffs),
    }


def compare_rows(model: Sequence[RunRecord], baseline: Sequence[RunRecord], metric: str) -> dict[str, Any]:
    """One comparison of two rows: the paired per-clip difference of their seed-averaged clip
    scores (:func:`paired_difference`), its p-values over clips and the seed-paired spread
    (:mod:`dfkd.experiment.significance`)."""
    mine, base = clip_means(model, metric), clip_means(baseline, metric)
    return {**paired_difference(mine, base), **clip_tests(mine, base),
            "seeds": seed_paired(model, baseline, metric)}


def is_dfkd(model: str, methods: Mapping[str, str] | None = None) -> bool:
    """A row trained with DFKD: by its variant's method when known, else by its name."""
    if methods and model in methods:
        return methods[model] == "dfkd"
    return model == "dfkd" or model.startswith("dfkd-")


def best_baseline(rows: Sequence[Row], rank_metric: str, methods: Mapping[str, str] | None = None
                  ) -> str | None:
    """The best student that is not DFKD (``none``, ``output``, ``sisnr``...), by the mean over
    seeds of ``rank_metric``: what DFKD has to beat for a user to prefer it."""
    rivals = [r for r in rows if r.model not in (TEACHER, NOISY) and not is_dfkd(r.model, methods)
              and r.mean(rank_metric) is not None]
    return max(rivals, key=lambda r: r.mean(rank_metric)).model if rivals else None


def _seed_stats(records: Sequence[RunRecord], metric: str) -> dict[str, Any] | None:
    per_seed = []
    for record in records:
        values = [s[metric] for s in record.scores.values() if metric in s]
        if values:
            per_seed.append(float(np.mean(values)))
    if not per_seed:
        return None
    return {"mean": float(np.mean(per_seed)), "std": _sample_std(per_seed), "per_seed": per_seed}


def _noisy_row(records: Sequence[RunRecord], metrics: Sequence[str]) -> Row | None:
    # Every run of a grid scores the same test clips, so one record's noisy scores are the input's.
    source = next((r for r in records if r.noisy_scores), None)
    if source is None:
        return None
    row = Row(arch="", model=NOISY)
    for metric in metrics:
        values = [s[metric] for s in source.noisy_scores.values() if metric in s]
        if values:  # std over clips here: the input has no seeds
            row.metrics[metric] = {"mean": float(np.mean(values)), "std": _sample_std(values),
                                   "per_seed": [], "std_over": "clips"}
    return row


def _model_order(models: Iterable[str], order: Sequence[str] | None) -> list[str]:
    models = list(dict.fromkeys(models))
    preferred = [TEACHER, BASELINE, *(order or [])]
    ranked = [m for m in dict.fromkeys(preferred) if m in models]
    return ranked + [m for m in models if m not in ranked]


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def provenance_line(records: Sequence[RunRecord]) -> str:
    """"Numbers from runs with seeds ..., finished ... on ...": what a reader needs to reproduce them."""
    students = sorted({r.seed for r in records if r.model != TEACHER and r.seed is not None})
    teachers = sorted({r.seed for r in records if r.model == TEACHER and r.seed is not None
                       and not r.pretrained})
    pretrained = sorted({r.arch for r in records if r.pretrained})
    dates = sorted(r.finished[:10] for r in records if r.finished)
    machines = sorted({r.machine for r in records if r.machine})
    parts = [f"student seeds {', '.join(map(str, students)) or '–'}"]
    if teachers:
        parts.append(f"teacher seed(s) {', '.join(map(str, teachers))}")
    if pretrained:
        parts.append(f"pretrained teachers for {', '.join(pretrained)}")
    when = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "an unknown date"
    where = "; ".join(machines) if machines else "an unknown machine"
    return f"Numbers from runs with {', '.join(parts)}, finished {when} on {where}."


def build_results(
    records: Sequence[RunRecord],
    *,
    order: Sequence[str] | None = None,
    sweeps: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    rank_metric: str = "si_snri",
    lead_target: float = LEAD_TARGET_DB,
    meta: Mapping[str, Any] | None = None,
    methods: Mapping[str, str] | None = None,
) -> Results:
    """Aggregate per-seed records into the table, the teacher lead and the paired differences.

    Args:
        records: one per model and seed.
        order: the student methods in the order the table lists them (after teacher and none).
        sweeps: arch -> method -> ``{"chosen": lambda, "candidates": {lambda: validation SI-SNR}}``.
        rank_metric: the metric that decides the best student per architecture.
        lead_target: the teacher lead over ``none`` (dB SI-SNRi) that method.md asks for.
        meta: anything else to keep in ``results.json`` (config name, data folder...).
        methods: row name -> KD method (the config's variants); rows not in it are DFKD when
            named ``dfkd`` or ``dfkd-*``.
    """
    if not records:
        raise DfkdError("no evaluated runs to report")
    present = {m for r in records for s in r.scores.values() for m in s}
    metrics = [m for m in TABLE_METRICS if m in present]
    rows: list[Row] = []
    noisy = _noisy_row(records, metrics)
    if noisy is not None:
        rows.append(noisy)
    paired: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    best: dict[str, str] = {}
    paired_best: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    lead: dict[str, dict[str, Any]] = {}
    for arch in dict.fromkeys(r.arch for r in records):
        mine = [r for r in records if r.arch == arch]
        groups = {m: [r for r in mine if r.model == m] for m in _model_order((r.model for r in mine), order)}
        arch_rows = []
        for model, group in groups.items():
            group.sort(key=lambda r: (r.seed is None, r.seed or 0))
            row = Row(arch=arch, model=model, preset=_first(r.preset for r in group) or "",
                      seeds=[r.seed for r in group], kd_weight=_first(r.kd_weight for r in group),
                      params=_first(r.params for r in group), macs=_first(r.macs for r in group),
                      rtf=_first(r.rtf for r in group))
            for metric in metrics:
                stats = _seed_stats(group, metric)
                if stats is not None:
                    row.metrics[metric] = stats
            arch_rows.append(row)
        students = [r for r in arch_rows if r.model != TEACHER and r.mean(rank_metric) is not None]
        if students:
            max(students, key=lambda r: r.mean(rank_metric)).best = True
        rows.extend(arch_rows)
        if BASELINE in groups:
            paired[arch] = {model: {m: compare_rows(group, groups[BASELINE], m) for m in metrics}
                            for model, group in groups.items() if model != BASELINE}
        rival = best_baseline(arch_rows, rank_metric, methods)
        if rival is not None:
            best[arch] = rival
            paired_best[arch] = {model: {m: compare_rows(group, groups[rival], m) for m in metrics}
                                 for model, group in groups.items() if model != rival}
        lead[arch] = _teacher_lead(arch_rows, paired.get(arch, {}), lead_target,
                                   [r.late_gain_db for r in groups.get(BASELINE, [])])
    return Results(metrics=metrics, rows=rows, teacher_lead=lead, paired=paired,
                   sweeps={a: {m: dict(v) for m, v in s.items()} for a, s in (sweeps or {}).items()},
                   provenance=provenance_line(records), rank_metric=rank_metric, meta=dict(meta or {}),
                   best_baseline=best, paired_best=paired_best, methods=dict(methods or {}))


def _teacher_lead(rows: Sequence[Row], paired: Mapping[str, Any], target: float,
                  none_late_gains: Sequence[float | None] = ()) -> dict[str, Any]:
    teacher = next((r for r in rows if r.model == TEACHER), None)
    none = next((r for r in rows if r.model == BASELINE), None)
    gains = [g for g in none_late_gains if g is not None]
    entry: dict[str, Any] = {"target_db": target, "teacher": None, "none": None, "lead_db": None,
                             "se_db": None, "meets_target": None,
                             # the lead against a student still improving overstates what KD can use
                             "none_late_gain_db": max(gains) if gains else None,
                             "none_converged": (max(gains) < CONVERGED_GAIN_DB) if gains else None}
    if teacher is None or none is None or teacher.mean("si_snri") is None or none.mean("si_snri") is None:
        return entry
    entry.update(teacher=teacher.mean("si_snri"), none=none.mean("si_snri"))
    entry["lead_db"] = entry["teacher"] - entry["none"]
    entry["se_db"] = paired.get(TEACHER, {}).get("si_snri", {}).get("se")
    entry["meets_target"] = bool(entry["lead_db"] >= target)
    return entry

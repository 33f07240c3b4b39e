"""The results as text: ``results.md``, ``results.csv``, ``results.json`` and their cells.

:mod:`dfkd.experiment.results` computes the numbers; this module only formats and writes them, so that the
markdown table and ``report.html`` (:mod:`dfkd.experiment.html`) show exactly the same cells.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..files import write_json, write_text
from ..models.complexity import format_count as models_format_count
from ..evaluation.metrics import DECIMALS, LABELS, UNITS
from .results import NOISY, PAIRED_METRICS, TEACHER, Results, Row


def format_count(value: float | None) -> str:
    """``4984497 -> '4.98 M'``: three significant digits with a metric prefix; ``–`` when unknown."""
    return "–" if value is None else models_format_count(value)


def metric_header(metric: str) -> str:
    return LABELS.get(metric, metric) + (f" ({UNITS[metric]})" if metric in UNITS else "")


def format_cell(entry: Mapping[str, Any] | None, metric: str) -> str:
    """``mean ± std``; a lone seed shows the mean alone (a std of one value means nothing)."""
    if entry is None or entry.get("mean") is None:
        return "–"
    digits = DECIMALS.get(metric, 2)
    single = entry.get("std_over") != "clips" and len(entry.get("per_seed", [])) < 2
    if single:
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def format_difference(diff: Mapping[str, float], metric: str) -> str:
    """``+0.12 ± 0.03 (41/60)``: mean paired difference ± standard error (clips better / clips)."""
    if not diff or not diff.get("clips"):
        return "–"
    digits = DECIMALS.get(metric, 2)
    if not math.isnan(diff["se"]) and diff["se"] > 0:
        # enough decimals for the standard error to show a significant digit: a PESQ difference
        # of +0.004 ± 0.002 must not read "+0.00 ± 0.00" (at most 4 decimals)
        digits = min(4, max(digits, -math.floor(math.log10(diff["se"]))))
    se = "" if math.isnan(diff["se"]) else f" ± {diff['se']:.{digits}f}"
    return f"{diff['mean']:+.{digits}f}{se} ({diff['better']}/{diff['clips']})"


def table_cells(row: Row, metrics: Sequence[str]) -> list[str]:
    """The cells of one table row (after the architecture and model columns)."""
    seeds = "–" if row.model == NOISY else str(len(row.seeds))
    weight = "–" if row.kd_weight is None else f"{row.kd_weight:g}"
    rtf = "–" if row.rtf is None else f"{row.rtf:.3f}"
    return ([seeds, weight] + [format_cell(row.metrics.get(m), m) for m in metrics]
            + [format_count(row.params), format_count(row.macs), rtf])


def table_header(metrics: Sequence[str]) -> list[str]:
    return (["arch", "model", "seeds", "λ"] + [metric_header(m) for m in metrics]
            + ["params", "MACs/s", "RTF (CPU)"])


def lead_sentence(arch: str, lead: Mapping[str, Any]) -> str:
    """One line per architecture; method.md asks for the teacher's lead to be printed."""
    if lead.get("lead_db") is None:
        return f"{arch}: teacher lead over `none` unknown (teacher or `none` not evaluated)."
    se = f" ± {lead['se_db']:.2f}" if lead.get("se_db") is not None and not math.isnan(lead["se_db"]) else ""
    verdict = ("meets" if lead["meets_target"] else "is BELOW") + f" the {lead['target_db']:g} dB target"
    hint = "" if lead["meets_target"] else "; KD gains over `none` cannot be expected to be large"
    late = lead.get("none_late_gain_db")
    if lead.get("none_converged") is False:
        verdict += (f" only against a `none` student still improving ({late:+.2f} dB validation "
                    "SI-SNR over its last 20 % of steps): not the lead at convergence")
    elif lead.get("none_converged"):
        verdict += f" (`none` converged: {late:+.2f} dB over its last 20 % of steps)"
    return (f"{arch}: teacher leads `none` by {lead['lead_db']:+.2f}{se} dB SI-SNRi "
            f"({lead['teacher']:.2f} vs {lead['none']:.2f}), which {verdict}{hint}.")


def verdict_sentence(results: Results, arch: str) -> str | None:
    """One line: does DFKD (any row named ``dfkd`` or ``dfkd-*``) beat every other student of
    ``arch``, by the paired per-clip difference over ``none`` in the rank metric? ``None`` when the
    grid has no DFKD row or no paired differences yet."""
    metric = results.rank_metric
    diffs = {model: d[metric] for model, d in results.paired.get(arch, {}).items()
             if model != TEACHER and metric in d and d[metric].get("clips")}
    dfkd = {m: d for m, d in diffs.items() if m == "dfkd" or m.startswith("dfkd-")}
    others = {m: d for m, d in diffs.items() if m not in dfkd}
    others["none"] = {"mean": 0.0, "se": 0.0, "clips": 1}
    if not dfkd:
        return None
    unit = f" {UNITS[metric]}" if metric in UNITS else ""
    best_dfkd = max(dfkd, key=lambda m: dfkd[m]["mean"])
    best_other = max(others, key=lambda m: others[m]["mean"])

    def said(model: str, diff: Mapping[str, float]) -> str:
        return "`none`" if model == "none" else f"`{model}` ({format_difference(diff, metric)}{unit})"

    label = LABELS.get(metric, metric)
    if dfkd[best_dfkd]["mean"] > others[best_other]["mean"]:
        return (f"{arch}: DFKD is ahead of every baseline in {label}: {said(best_dfkd, dfkd[best_dfkd])} "
                f"over `none`, the best baseline {said(best_other, others[best_other])}.")
    return (f"{arch}: DFKD does NOT beat the best baseline in {label}: its best row "
            f"{said(best_dfkd, dfkd[best_dfkd])} over `none`, against {said(best_other, others[best_other])}; "
            f"pick {best_other if best_other != 'none' else 'no KD (`none`)'}.")


def to_markdown(results: Results) -> str:
    """``results.md``: the table, the teacher leads, the paired differences and the lambda sweeps."""
    header = table_header(results.metrics)
    verdicts = [v for v in (verdict_sentence(results, a) for a in results.teacher_lead) if v]
    lines = [
        "# Results", "",
        *([f"- {v}" for v in verdicts] + [""] if verdicts else []),
        f"Mean ± std over seeds (each seed: mean over the test clips; the noisy row: over clips). "
        f"★ = best student of its architecture by {metric_header(results.rank_metric)}. "
        "MACs per second of audio; RTF = CPU wall time / audio duration, batch of one.", "",
        "| " + " | ".join(header) + " |",
        "|---|---|" + "---:|" * (len(header) - 2),
    ]
    for row in results.rows:
        name = row.model + (" ★" if row.best else "")
        if row.model == TEACHER and row.preset:
            name += f" ({row.preset})"
        lines.append(f"| {row.arch or '–'} | {name} | " + " | ".join(table_cells(row, results.metrics)) + " |")
    lines += ["", "## Teacher lead over `none`", ""]
    lines += [f"- {lead_sentence(arch, results.teacher_lead[arch])}" for arch in results.teacher_lead]
    shown = [m for m in PAIRED_METRICS if m in results.metrics]
    if results.paired and shown:
        lines += ["", "## Paired per-clip differences against `none`", "",
                  "Per clip, each model's scores averaged over its seeds minus `none`'s; mean ± "
                  "standard error over clips (clips better / clips).", "",
                  "| arch | model | " + " | ".join(f"Δ {metric_header(m)}" for m in shown) + " |",
                  "|---|---|" + "---:|" * len(shown)]
        for arch, models in results.paired.items():
            for model, diffs in models.items():
                cells = [format_difference(diffs.get(m, {}), m) for m in shown]
                lines.append(f"| {arch} | {model} | " + " | ".join(cells) + " |")
    if results.sweeps:
        lines += ["", "## KD weight (λ) chosen by the validation sweep", "",
                  "Validation SI-SNR (dB) per candidate λ; the best is chosen (**bold**).", "",
                  "| arch | method | candidates | chosen λ |", "|---|---|---|---:|"]
        for arch, methods in results.sweeps.items():
            for method, sweep in methods.items():
                cands = ", ".join(
                    (f"**{float(lam):g}: {val:.2f}**" if float(lam) == float(sweep.get("chosen", math.nan))
                     else f"{float(lam):g}: {val:.2f}")
                    for lam, val in sorted(sweep.get("candidates", {}).items(), key=lambda kv: float(kv[0])))
                lines.append(f"| {arch} | {method} | {cands} | {float(sweep['chosen']):g} |")
    lines += ["", results.provenance, ""]
    return "\n".join(lines)


def to_csv(results: Results) -> str:
    """``results.csv``: one row per model, mean and std columns per metric, raw numbers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    stat_cols = [f"{m}_{s}" for m in results.metrics for s in ("mean", "std")]
    writer.writerow(["arch", "model", "preset", "seeds", "kd_weight", "best_student", *stat_cols,
                     "params", "macs_per_second", "rtf"])
    for row in results.rows:
        stats = []
        for metric in results.metrics:
            entry = row.metrics.get(metric)
            stats += ["", ""] if entry is None else [repr(entry["mean"]), repr(entry["std"])]
        writer.writerow([row.arch, row.model, row.preset, " ".join(map(str, row.seeds)),
                         "" if row.kd_weight is None else row.kd_weight, int(row.best), *stats,
                         "" if row.params is None else row.params,
                         "" if row.macs is None else row.macs, "" if row.rtf is None else row.rtf])
    return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    # NaN is not JSON: a standard error of one clip is "unknown", i.e. null
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_results(results: Results, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``results.md``, ``results.csv`` and ``results.json`` into ``out_dir``."""
    out = Path(out_dir)
    paths = [out / "results.md", out / "results.csv", out / "results.json"]
    write_text(paths[0], to_markdown(results))
    write_text(paths[1], to_csv(results))
    write_json(paths[2], _json_safe(results.to_dict()))
    return paths

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
from .significance import is_significant_gain


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


def se_digits(se: float | None, metric: str) -> int:
    """Decimals for a difference whose standard error is ``se``: the metric's own, or enough for
    the standard error to show a significant digit: a PESQ difference of +0.004 ± 0.002 must not
    read "+0.00 ± 0.00" (at most 4 decimals)."""
    digits = DECIMALS.get(metric, 2)
    # below 1e-12 the standard error is floating-point rounding of a constant shift, not a spread
    if se is not None and math.isfinite(se) and se > 1e-12:
        digits = min(4, max(digits, -math.floor(math.log10(se))))
    return digits


def format_difference(diff: Mapping[str, float], metric: str) -> str:
    """``+0.12 ± 0.03 (41/60)``: mean paired difference ± standard error (clips better / clips)."""
    if not diff or not diff.get("clips"):
        return "–"
    digits = se_digits(diff["se"], metric)
    se = "" if diff["se"] is None or math.isnan(diff["se"]) else f" ± {diff['se']:.{digits}f}"
    return f"{diff['mean']:+.{digits}f}{se} ({diff['better']}/{diff['clips']})"


def format_p(p: float | None) -> str:
    """``p=0.002``, ``p=0.31``, ``p<0.001``; ``p=–`` when there is no test (one clip)."""
    if p is None or not math.isfinite(p):
        return "p=–"
    if p < 0.001:
        return "p<0.001"
    return f"p={p:.3f}" if p < 0.01 else f"p={p:.2f}"


def format_seeds(seeds: Mapping[str, Any] | None, digits: int) -> str:
    """``seeds +0.11 ± 0.04, 3/3 better``: the seed-paired difference; empty with no shared seed."""
    if not seeds or not seeds.get("seeds"):
        return ""
    n = len(seeds["seeds"])
    std = seeds.get("std")
    spread = f" ± {std:.{digits}f}" if std is not None and math.isfinite(std) else ""
    return f"; seeds {seeds['mean']:+.{digits}f}{spread}, {seeds['better']}/{n} better"


def format_comparison(diff: Mapping[str, Any], metric: str) -> str:
    """``+0.12 ± 0.03 (41/60; p=0.002; seeds +0.11 ± 0.04, 3/3 better)``: the paired difference
    over clips ± its standard error, clips better, the Wilcoxon p-value over clips, and the
    seed-paired difference (mean ± std over seeds, seeds better). Decimals from the standard
    error (:func:`se_digits`)."""
    if not diff or not diff.get("clips"):
        return "–"
    digits = se_digits(diff.get("se"), metric)
    se = diff.get("se")
    se_text = f" ± {se:.{digits}f}" if se is not None and math.isfinite(se) else ""
    return (f"{diff['mean']:+.{digits}f}{se_text} ({diff['better']}/{diff['clips']}; "
            f"{format_p(diff.get('p_wilcoxon'))}{format_seeds(diff.get('seeds'), digits)})")


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
    """One line: does DFKD (every row whose method is ``dfkd``) beat the best baseline of ``arch``
    (the best non-DFKD student, :func:`dfkd.experiment.results.best_baseline`), by the paired
    per-clip difference in the rank metric, significantly (Wilcoxon over clips, most seeds;
    :func:`dfkd.experiment.significance.is_significant_gain`)? And which method to pick.
    ``None`` when the grid has no DFKD row or no baseline to compare with."""
    metric = results.rank_metric
    rival = results.best_baseline.get(arch)
    diffs = {model: d[metric] for model, d in results.paired_best.get(arch, {}).items()
             if results.is_dfkd(model) and metric in d and d[metric].get("clips")}
    if rival is None or not diffs:
        return None
    unit = f" {UNITS[metric]}" if metric in UNITS else ""
    label = LABELS.get(metric, metric)
    best = max(diffs, key=lambda m: diffs[m]["mean"])
    diff = diffs[best]
    said = f"{format_comparison(diff, metric)}{unit} {label}"
    rival_name = "no KD (`none`)" if rival == "none" else f"`{rival}`"
    # the row `dfkd` (the method's default name) is the paper's adapter: when an ablation is the
    # best variant, the paper's own rule is not, and the line says how that one did
    paper = (f" (the paper's adapter, `dfkd`: {format_comparison(diffs['dfkd'], metric)}{unit})"
             if best != "dfkd" and "dfkd" in diffs else "")
    if is_significant_gain(diff):
        return (f"{arch}: DFKD (`{best}`) beats the best baseline ({rival_name}) by {said}{paper}; "
                f"pick `{best}`.")
    if diff["mean"] > 0:
        return (f"{arch}: DFKD (`{best}`) is ahead of the best baseline ({rival_name}) by {said}, "
                f"which is NOT significant{paper}; pick {rival_name} (simpler) or either.")
    return (f"{arch}: DFKD does NOT beat the best baseline ({rival_name}): its best variant "
            f"`{best}` is {said}{paper}; pick {rival_name}.")


def _paired_lines(results: Results, paired: Mapping[str, Any], shown: Sequence[str]) -> list[str]:
    lines = ["| arch | model | " + " | ".join(f"Δ {metric_header(m)}" for m in shown) + " |",
             "|---|---|" + "---:|" * len(shown)]
    for arch, models in paired.items():
        for model, diffs in models.items():
            cells = [format_comparison(diffs.get(m, {}), m) for m in shown]
            lines.append(f"| {arch} | {model} | " + " | ".join(cells) + " |")
    return lines


PAIRED_NOTE = ("Per clip, each model's scores averaged over its seeds minus the other row's; mean ± "
               "standard error over clips (clips better / clips; Wilcoxon signed-rank p over clips; "
               "seeds: the same-seed difference, mean ± std over seeds, seeds better).")


RATIO_NOTE = ("λ‖∇KD‖/‖∇task‖: the KD term's gradient norm over the task loss's, median over "
              "the second half of the sweep run's training (the trainer's `grad_ratio`): a KD term "
              "at a few percent of the task's barely moves the student.")


def chosen_gradient_ratio(sweep: Mapping[str, Any]) -> float | None:
    """The logged KD/task gradient ratio of the sweep's chosen lambda (keys may be strings: JSON)."""
    chosen = float(sweep.get("chosen", math.nan))
    for lam, ratio in (sweep.get("grad_ratio") or {}).items():
        if float(lam) == chosen and ratio is not None:
            return float(ratio)
    return None


def format_ratio(ratio: float | None) -> str:
    return "–" if ratio is None or not math.isfinite(ratio) else f"{ratio:.3f}"


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
        lines += ["", "## Paired per-clip differences against `none`", "", PAIRED_NOTE, "",
                  *_paired_lines(results, results.paired, shown)]
    if results.paired_best and shown:
        rivals = ", ".join(f"{a}: `{m}`" for a, m in results.best_baseline.items())
        lines += ["", "## Paired per-clip differences against the best baseline", "",
                  f"The best baseline is the best non-DFKD student by "
                  f"{metric_header(results.rank_metric)} ({rivals}). " + PAIRED_NOTE, "",
                  *_paired_lines(results, results.paired_best, shown)]
    if results.sweeps:
        lines += ["", "## KD weight (λ) chosen by the validation sweep", "",
                  "Validation SI-SNR (dB) per candidate λ; the best is chosen (**bold**). " + RATIO_NOTE, "",
                  "| arch | method | candidates | chosen λ | λ‖∇KD‖/‖∇task‖ at it |", "|---|---|---|---:|---:|"]
        for arch, methods in results.sweeps.items():
            for method, sweep in methods.items():
                cands = ", ".join(
                    (f"**{float(lam):g}: {val:.2f}**" if float(lam) == float(sweep.get("chosen", math.nan))
                     else f"{float(lam):g}: {val:.2f}")
                    for lam, val in sorted(sweep.get("candidates", {}).items(), key=lambda kv: float(kv[0])))
                lines.append(f"| {arch} | {method} | {cands} | {float(sweep['chosen']):g} | "
                             f"{format_ratio(chosen_gradient_ratio(sweep))} |")
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

"""``report.html``: one static page with the results table, the figures and audio players.

Everything the page shows lives beside it (PNG figures, WAV clips) and is linked by relative
paths, with inline CSS and no script: the folder can be zipped, mailed or served as is, and it
renders offline (a test opens it in headless Chromium and checks the screenshot).
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from ..files import write_text
from .tables import (
    PAIRED_NOTE, RATIO_NOTE, chosen_gradient_ratio, format_comparison, format_ratio, lead_sentence,
    metric_header, table_cells, table_header, verdict_sentence,
)
from .results import NOISY, PAIRED_METRICS, TEACHER, Results

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2em;
       color: #1b1b1b; max-width: 1400px; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f2f5; } td.l, th.l { text-align: left; }
tr.noisy td { background: #fafafa; font-style: italic; } tr.teacher td { background: #f3f7ff; }
tr.best td { background: #eefbea; font-weight: 600; }
.bad { color: #b00020; } .ok { color: #1b7f2a; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.clip { display: flex; gap: 1.5em; align-items: flex-start; margin-bottom: 2em; flex-wrap: wrap; }
.players td { text-align: left; } audio { height: 32px; width: 260px; }
.wide { overflow-x: auto; }
.note { font-size: 0.85em; color: #555; }
"""


@dataclass
class ReportFigure:
    """A figure of the page: title, PNG path relative to the page, caption."""

    title: str
    path: str
    caption: str = ""


@dataclass
class ReportClip:
    """One test clip: its spectrogram figure and its audio files (label, path relative to the page)."""

    name: str
    spectrogram: str | None = None
    audio: list[tuple[str, str]] = field(default_factory=list)
    not_played: list[str] = field(default_factory=list)  # "label (why)" of systems left out


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(path: str) -> str:
    # relative POSIX paths, each segment URL-escaped (clip names may hold spaces or '#')
    return quote(Path(path).as_posix())


def results_table(results: Results) -> str:
    """The results table as HTML (the same cells as ``results.md``)."""
    head = "".join(f'<th class="l">{_esc(h)}</th>' if i < 2 else f"<th>{_esc(h)}</th>"
                   for i, h in enumerate(table_header(results.metrics)))
    body = []
    for row in results.rows:
        classes = [c for c, on in (("noisy", row.model == NOISY), ("teacher", row.model == TEACHER),
                                   ("best", row.best)) if on]
        name = row.model + (" ★" if row.best else "")
        if row.model == TEACHER and row.preset:
            name += f" ({row.preset})"
        cells = "".join(f"<td>{_esc(c)}</td>" for c in table_cells(row, results.metrics))
        body.append(f'<tr class="{" ".join(classes)}"><td class="l">{_esc(row.arch or "–")}</td>'
                    f'<td class="l">{_esc(name)}</td>{cells}</tr>')
    # the table is wider than a laptop screen with every metric: it scrolls, the page does not
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def paired_table(results: Results, paired: Mapping[str, Any] | None = None) -> str:
    """Paired differences (the same cells as ``results.md``): against ``none`` by default, or
    ``paired`` (e.g. ``results.paired_best``, against the best baseline)."""
    paired = results.paired if paired is None else paired
    shown = [m for m in PAIRED_METRICS if m in results.metrics]
    if not paired or not shown:
        return "<p>No baseline runs: no paired differences.</p>"
    head = "".join(f"<th>Δ {_esc(metric_header(m))}</th>" for m in shown)
    body = []
    for arch, models in paired.items():
        for model, diffs in models.items():
            cells = "".join(f"<td>{_esc(format_comparison(diffs.get(m, {}), m))}</td>" for m in shown)
            body.append(f'<tr><td class="l">{_esc(arch)}</td><td class="l">{_esc(model)}</td>{cells}</tr>')
    return (f'<div class="wide"><table><thead><tr><th class="l">arch</th><th class="l">model</th>{head}'
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def sweep_table(results: Results) -> str:
    if not results.sweeps:
        return "<p>No λ sweep was run (the configuration fixed every λ).</p>"
    body = []
    for arch, methods in results.sweeps.items():
        for method, sweep in methods.items():
            chosen = float(sweep["chosen"])
            cands = ", ".join(
                (f"<b>{float(lam):g}: {val:.2f}</b>" if float(lam) == chosen else f"{float(lam):g}: {val:.2f}")
                for lam, val in sorted(sweep.get("candidates", {}).items(), key=lambda kv: float(kv[0])))
            body.append(f'<tr><td class="l">{_esc(arch)}</td><td class="l">{_esc(method)}</td>'
                        f'<td class="l">{cands}</td><td>{chosen:g}</td>'
                        f'<td>{format_ratio(chosen_gradient_ratio(sweep))}</td></tr>')
    return ('<table><thead><tr><th class="l">arch</th><th class="l">method</th>'
            '<th class="l">candidate λ: validation SI-SNR (dB)</th><th>chosen λ</th>'
            '<th>λ‖∇KD‖/‖∇task‖ at it</th></tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table><p>{_esc(RATIO_NOTE)}</p>")


def _figure(fig: ReportFigure) -> str:
    caption = f"<figcaption>{_esc(fig.caption)}</figcaption>" if fig.caption else ""
    return (f'<figure><img src="{_href(fig.path)}" alt="{_esc(fig.title)}">{caption}</figure>')


def _clip(clip: ReportClip) -> str:
    players = "".join(
        f'<tr><td>{_esc(label)}</td><td><audio controls preload="none" '
        f'src="{_href(path)}"></audio></td></tr>' for label, path in clip.audio)
    image = (f'<img src="{_href(clip.spectrogram)}" alt="spectrograms of {_esc(clip.name)}" '
             'style="max-width:760px">' if clip.spectrogram else "")
    missing = (f'<p class="note">Not played: {_esc("; ".join(clip.not_played))}.</p>'
               if clip.not_played else "")
    return (f'<h3>{_esc(clip.name)}</h3><div class="clip">{image}'
            f'<table class="players"><tbody>{players}</tbody></table></div>{missing}')


def render_html(results: Results, figures: Sequence[ReportFigure] = (),
                clips: Sequence[ReportClip] = (), title: str = "dfkd comparison") -> str:
    """The whole page as a string."""
    leads = []
    for arch, lead in results.teacher_lead.items():
        css = "ok" if lead.get("meets_target") and lead.get("none_converged") is not False else "bad"
        leads.append(f'<li class="{css}">{_esc(lead_sentence(arch, lead))}</li>')
    verdicts = [v for v in (verdict_sentence(results, a) for a in results.teacher_lead) if v]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>", f'<p class="note">{_esc(results.provenance)}</p>',
        *([f"<h2>Verdict</h2><ul>{''.join(f'<li>{_esc(v)}</li>' for v in verdicts)}</ul>"]
          if verdicts else []),
        "<h2>Results</h2>",
        f'<p class="note">Mean ± std over seeds (noisy row: over clips). ★ = best student of its '
        f"architecture by {_esc(metric_header(results.rank_metric))}. MACs per second of audio; "
        "RTF = CPU wall time / audio duration.</p>",
        results_table(results),
        "<h2>Teacher lead over <code>none</code></h2>", f"<ul>{''.join(leads)}</ul>",
        "<h2>Paired per-clip differences against <code>none</code></h2>",
        f'<p class="note">{_esc(PAIRED_NOTE)}</p>',
        paired_table(results),
        *(["<h2>Paired per-clip differences against the best baseline</h2>",
           f'<p class="note">Best baseline (best non-DFKD student by '
           f"{_esc(metric_header(results.rank_metric))}): "
           f"{_esc(', '.join(f'{a}: {m}' for a, m in results.best_baseline.items()))}.</p>",
           paired_table(results, results.paired_best)] if results.paired_best else []),
        "<h2>KD weight (λ) sweep</h2>", sweep_table(results),
    ]
    for fig in figures:
        parts += [f"<h2>{_esc(fig.title)}</h2>", _figure(fig)]
    if clips:
        parts.append("<h2>Listening examples</h2>")
        parts += [_clip(c) for c in clips]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report_html(results: Results, out_dir: str | os.PathLike,
                      figures: Sequence[ReportFigure] = (), clips: Sequence[ReportClip] = (),
                      title: str = "dfkd comparison") -> Path:
    """Write ``report.html`` into ``out_dir``; every linked file must already lie beside it."""
    out = Path(out_dir)
    for path in [f.path for f in figures] + [p for c in clips for _, p in c.audio] + [
            c.spectrogram for c in clips if c.spectrogram]:
        if not (out / path).is_file():  # a broken link is a bug of the caller, not of the user
            raise FileNotFoundError(f"report.html links {path}, which is not in {out}")
    page = out / "report.html"
    write_text(page, render_html(results, figures, clips, title))
    return page

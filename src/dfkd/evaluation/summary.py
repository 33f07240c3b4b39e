"""The scores of one system on one test set, and the three files they are written to.

- ``per_file.csv``: one row per scored clip; ``noisy_<metric>`` columns hold the input's scores;
- ``summary.json``: counts, mean/std per metric for the enhanced and the noisy audio, failures;
- ``summary.md``: a markdown table, mean ± std per metric, the noisy row first.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .. import SAMPLE_RATE
from ..files import write_json, write_text
from .metrics import DECIMALS, LABELS, NEEDS_NOISY, UNITS
from .scoring import ClipResult


def _stats(rows: Sequence[dict[str, float]], metrics: Sequence[str]) -> dict[str, dict]:
    """Mean and sample standard deviation (ddof=1; 0 for a single clip) of each metric."""
    out: dict[str, dict] = {}
    for name in metrics:
        values = np.array([row[name] for row in rows if name in row], dtype=np.float64)
        if values.size == 0:
            out[name] = {"mean": None, "std": None}
            continue
        std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
        out[name] = {"mean": float(np.mean(values)), "std": std}
    return out


@dataclass
class Summary:
    """Scores of one system on one test set.

    Attributes:
        label: the system's name (first column of the table).
        metrics: the metric keys scored, in canonical order.
        names: the scored clips, in test-set order.
        scores: per clip, metric -> value (same order as ``names``).
        noisy_scores: per clip, the noisy input's own scores (None when the noisy audio is unknown).
        failed: ``(clip name, reason)`` of every clip that could not be scored.
    """

    label: str
    metrics: list[str]
    names: list[str] = field(default_factory=list)
    scores: list[dict[str, float]] = field(default_factory=list)
    noisy_scores: list[dict[str, float]] | None = None
    failed: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_results(
        cls, label: str, metrics: Sequence[str], results: Iterable[ClipResult], with_noisy: bool
    ) -> "Summary":
        ordered = sorted(results, key=lambda r: r.index)
        good = [r for r in ordered if r.ok]
        return cls(
            label=label,
            metrics=list(metrics),
            names=[r.name for r in good],
            scores=[r.scores for r in good],
            noisy_scores=[r.noisy_scores or {} for r in good] if with_noisy else None,
            failed=[(r.name, r.error or "") for r in ordered if not r.ok],
        )

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def noisy_metrics(self) -> list[str]:
        return [m for m in self.metrics if m not in NEEDS_NOISY]

    def stats(self) -> dict[str, dict]:
        """metric -> {"mean", "std"} over the scored clips."""
        return _stats(self.scores, self.metrics)

    def noisy_stats(self) -> dict[str, dict] | None:
        """metric -> {"mean", "std"} of the noisy input (None when unknown)."""
        if self.noisy_scores is None:
            return None
        return _stats(self.noisy_scores, self.noisy_metrics)

    @property
    def mean(self) -> dict[str, float | None]:
        return {k: v["mean"] for k, v in self.stats().items()}

    @property
    def std(self) -> dict[str, float | None]:
        return {k: v["std"] for k, v in self.stats().items()}

    def to_dict(self) -> dict:
        """The content of ``summary.json``."""
        return {
            "label": self.label,
            "sample_rate": SAMPLE_RATE,
            "clips": self.count,
            "metrics": self.stats(),
            "noisy": self.noisy_stats(),
            "failed": [{"name": name, "error": error} for name, error in self.failed],
        }

    def to_markdown(self) -> str:
        """A table of mean ± std per metric; the noisy input's row first when it is known."""
        header = [LABELS.get(m, m) + (f" ({UNITS[m]})" if m in UNITS else "")
                  for m in self.metrics]
        lines = [
            f"# Evaluation: {self.label}",
            "",
            f"{self.count} clip(s) scored, {len(self.failed)} failed. Mean ± std over clips.",
            "",
            "| system | " + " | ".join(header) + " |",
            "|---|" + "---:|" * len(self.metrics),
        ]
        rows = []
        noisy = self.noisy_stats()
        if noisy is not None:
            rows.append(("noisy", noisy))
        rows.append((self.label, self.stats()))
        for name, stats in rows:
            cells = []
            for metric in self.metrics:
                entry = stats.get(metric)
                if entry is None or entry["mean"] is None:
                    cells.append("–")
                    continue
                digits = DECIMALS.get(metric, 2)
                cells.append(f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if self.failed:
            lines += ["", "Clips that could not be scored (skipped):", ""]
            lines += [f"- `{name}`: {error}" for name, error in self.failed]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The content of ``per_file.csv``."""
        columns = ["name", *self.metrics]
        if self.noisy_scores is not None:
            columns += [f"noisy_{m}" for m in self.noisy_metrics]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for i, name in enumerate(self.names):
            row = [name] + [_fmt(self.scores[i].get(m)) for m in self.metrics]
            if self.noisy_scores is not None:
                row += [_fmt(self.noisy_scores[i].get(m)) for m in self.noisy_metrics]
            writer.writerow(row)
        return buffer.getvalue()

    def write(self, out_dir: str | os.PathLike) -> None:
        """Write ``per_file.csv``, ``summary.json`` and ``summary.md`` atomically."""
        out = Path(out_dir)
        write_text(out / "per_file.csv", self.to_csv())
        write_json(out / "summary.json", self.to_dict())
        write_text(out / "summary.md", self.to_markdown())


def _fmt(value: float | None) -> str:
    # repr of a float round-trips exactly: per_file.csv reproduces the means to the last bit
    return "" if value is None or not math.isfinite(value) else repr(float(value))

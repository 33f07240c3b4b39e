"""Score a model on a test set, or a folder of enhanced files against a clean folder.

The one place where evaluation numbers are made: ``dfkd evaluate``, the training loop's validation
and the experiment grid all call :func:`evaluate_model` / :func:`evaluate_folders`, which return
a :class:`Summary` (per-clip scores, mean and standard deviation per metric, the noisy input's own
scores, and the clips that could not be scored) and optionally write it to a folder:

- ``per_file.csv``: one row per scored clip; ``noisy_<metric>`` columns hold the input's scores;
- ``summary.json``: counts, mean/std per metric for the enhanced and the noisy audio, failures;
- ``summary.md``: a markdown table, mean ± std per metric, the noisy row first.

Metrics run in worker processes (:mod:`dfkd.evaluation.scoring`), so a clip that makes PESQ fail or crash is
reported and skipped. Enhancement runs whole utterances, at the model's rate (16 kHz), without
autograd; inputs at other rates are resampled when read (:func:`dfkd.audio.load_mono`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..audio import AUDIO_EXTENSIONS, load_mono, write_audio
from ..files import write_json, write_text
from ..data.datasets import Pair
from ..errors import DfkdError
from .metrics import DECIMALS, DEFAULT_METRICS, LABELS, NEEDS_NOISY, UNITS, check_metrics
from .scoring import ClipJob, ClipResult, score_clips
from .. import SAMPLE_RATE

# Enhanced and clean files of one utterance may differ by a little padding (frame multiples);
# beyond this, the files are not the same utterance and the evaluation would be meaningless.
LENGTH_TOLERANCE = 0.05



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


# ---------------------------------------------------------------------------------------------
# Scoring audio


def _resolve_metrics(metrics: Sequence[str] | None, with_noisy: bool) -> list[str]:
    names = check_metrics(DEFAULT_METRICS if metrics is None else metrics)
    if not with_noisy:  # SI-SNRi needs the noisy input
        names = [m for m in names if m not in NEEDS_NOISY]
    if not names:
        raise DfkdError("no metric left to compute (SI-SNRi needs the noisy files: --noisy)")
    if any(m.startswith("dnsmos") for m in names):
        from .dnsmos import model_path

        model_path()  # fail now, with the install hint, rather than once per clip
    return names


def score_audio(
    jobs: Iterable[ClipJob],
    total: int,
    label: str,
    *,
    with_noisy: bool,
    metrics: Sequence[str] | None = None,
    workers: int | None = None,
    out_dir: str | os.PathLike | None = None,
    score_noisy: bool = True,
    progress: bool = True,
) -> Summary:
    """Score ``jobs`` (a lazy iterable of 16 kHz clips); build and optionally write the summary.

    ``with_noisy``: the jobs carry the noisy input (SI-SNRi is computed); ``score_noisy``: also
    score the noisy input itself (the table's first row; the experiment grid, which scores many
    models on one test set, needs it only once).
    """
    names = _resolve_metrics(metrics, with_noisy)
    results = []
    bar = tqdm(total=total, desc=f"evaluate {label}", unit="clip", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        stream = score_clips(jobs, names, SAMPLE_RATE, workers=workers,
                             score_noisy=with_noisy and score_noisy)
        for result in stream:
            results.append(result)
            if not result.ok:
                bar.write(f"dfkd evaluate: skipped {result.name}: {result.error}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
    summary = Summary.from_results(label, names, results, with_noisy and score_noisy)
    if out_dir is not None:
        summary.write(out_dir)
    return summary


def _check_lengths(length: int, reference: int, path: Path, reference_path: Path) -> None:
    if abs(length - reference) > LENGTH_TOLERANCE * reference:
        raise DfkdError(
            f"{path}: {length} samples at {SAMPLE_RATE} Hz, but its clean partner "
            f"{reference_path} has {reference}: not the same utterance?"
        )


# ---------------------------------------------------------------------------------------------
# Folder mode


@dataclass(frozen=True)
class FolderItem:
    """One utterance of folder mode: its enhanced, clean and (optional) noisy files."""

    name: str
    enhanced: Path
    clean: Path
    noisy: Path | None = None


def _audio_by_stem(folder: Path, role: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DfkdError(f"{folder}: {role} folder not found")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if path.stem in files:
            raise DfkdError(f"{path}: same name as {files[path.stem]} in the {role} folder")
        files[path.stem] = path
    return files


def folder_items(
    enhanced_dir: str | os.PathLike,
    clean_dir: str | os.PathLike,
    noisy_dir: str | os.PathLike | None = None,
) -> list[FolderItem]:
    """Pair files by name (stem) across the folders; every file must have its partners.

    A file without a partner raises a :class:`DfkdError` naming it and where its partner was
    looked for: a silently smaller test set would give numbers that look comparable and are not.
    """
    folders = {"enhanced": Path(enhanced_dir), "clean": Path(clean_dir)}
    if noisy_dir is not None:
        folders["noisy"] = Path(noisy_dir)
    files = {role: _audio_by_stem(folder, role) for role, folder in folders.items()}
    if not files["enhanced"]:
        raise DfkdError(f"{folders['enhanced']}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    for role, found in files.items():
        for other, other_found in files.items():
            for stem in sorted(set(found) - set(other_found)):
                raise DfkdError(
                    f"{found[stem]}: no {other} partner named {stem}.* in {folders[other]}"
                )
    noisy = files.get("noisy", {})
    return [
        FolderItem(stem, files["enhanced"][stem], files["clean"][stem], noisy.get(stem))
        for stem in sorted(files["enhanced"])
    ]


def _folder_jobs(items: Sequence[FolderItem]) -> Iterator[ClipJob]:
    for index, item in enumerate(items):
        clean = load_mono(item.clean, SAMPLE_RATE)
        enhanced = load_mono(item.enhanced, SAMPLE_RATE)
        _check_lengths(len(enhanced), len(clean), item.enhanced, item.clean)
        noisy = None
        if item.noisy is not None:
            noisy = load_mono(item.noisy, SAMPLE_RATE)
            _check_lengths(len(noisy), len(clean), item.noisy, item.clean)
        yield ClipJob(index, item.name, enhanced, clean, noisy)


def evaluate_folders(
    enhanced_dir: str | os.PathLike,
    clean_dir: str | os.PathLike,
    noisy_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    metrics: Sequence[str] | None = None,
    workers: int | None = None,
    label: str | None = None,
    score_noisy: bool = True,
    progress: bool = True,
) -> Summary:
    """Score the enhanced files against the clean ones (paired by name), at 16 kHz.

    With ``noisy_dir`` the summary also holds SI-SNRi and (``score_noisy``) the noisy input's
    own scores.
    """
    items = folder_items(enhanced_dir, clean_dir, noisy_dir)
    return score_audio(
        _folder_jobs(items), len(items), label or Path(enhanced_dir).name or "enhanced",
        with_noisy=noisy_dir is not None, metrics=metrics, workers=workers, out_dir=out_dir,
        score_noisy=score_noisy, progress=progress,
    )


# ---------------------------------------------------------------------------------------------
# Model mode


def model_rate(model: nn.Module) -> int:
    rate = int(getattr(model, "sample_rate", SAMPLE_RATE))
    if rate != SAMPLE_RATE:
        raise DfkdError(f"model runs at {rate} Hz; evaluation is defined at {SAMPLE_RATE} Hz")
    return rate


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def enhance_utterance(
    model: nn.Module, noisy: np.ndarray, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Enhance one whole utterance (float32, 16 kHz) without autograd; same length back."""
    with torch.inference_mode():
        batch = torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32))[None].to(device)
        enhanced = model(batch)[0].float().cpu().numpy()
    if len(enhanced) >= len(noisy):
        return enhanced[: len(noisy)]
    return np.pad(enhanced, (0, len(noisy) - len(enhanced)))


def enhanced_path(out_dir: str | os.PathLike, name: str) -> Path:
    """Where the enhanced version of pair ``name`` is written: ``<out_dir>/<name>.wav``."""
    return Path(out_dir) / f"{name}.wav"


def _model_jobs(
    model: nn.Module, pairs: Sequence[Pair], device: str | torch.device, save_dir: Path | None
) -> Iterator[ClipJob]:
    for index, pair in enumerate(pairs):
        noisy = load_mono(pair.noisy, SAMPLE_RATE)
        clean = load_mono(pair.clean, SAMPLE_RATE)
        _check_lengths(len(noisy), len(clean), Path(pair.noisy), Path(pair.clean))
        enhanced = enhance_utterance(model, noisy, device)
        if save_dir is not None and np.all(np.isfinite(enhanced)):
            # 32-bit float wav: the folder mode re-reads exactly the samples scored here
            write_audio(enhanced_path(save_dir, pair.name), enhanced, SAMPLE_RATE, subtype="FLOAT")
        yield ClipJob(index, pair.name, enhanced, clean, noisy)


def enhance_pairs(
    model: nn.Module,
    pairs: Sequence[Pair],
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> list[Path]:
    """Enhance every pair's noisy file with ``model`` and write ``<out_dir>/<name>.wav``.

    Files are 32-bit float wav, so that scoring them later reproduces the in-memory scores.
    """
    model_rate(model)
    device = _model_device(model, device)
    was_training = model.training
    model.eval().to(device)
    written = []
    try:
        for pair in tqdm(pairs, desc="enhance", unit="clip", file=sys.stderr, disable=not progress):
            enhanced = enhance_utterance(model, load_mono(pair.noisy, SAMPLE_RATE), device)
            path = enhanced_path(out_dir, pair.name)
            write_audio(path, enhanced, SAMPLE_RATE, subtype="FLOAT")
            written.append(path)
    finally:
        model.train(was_training)
    return written


def evaluate_model(
    model: nn.Module,
    pairs: Sequence[Pair],
    out_dir: str | os.PathLike | None = None,
    *,
    metrics: Sequence[str] | None = None,
    workers: int | None = None,
    device: str | torch.device | None = None,
    save_enhanced: str | os.PathLike | None = None,
    label: str | None = None,
    score_noisy: bool = True,
    progress: bool = True,
) -> Summary:
    """Enhance each pair's noisy file with ``model`` and score it against the clean file.

    Enhancement (in this process, on ``device``, default: where the model's weights are) overlaps
    with scoring (in ``workers`` processes; 0 scores in this process). ``save_enhanced`` names a
    folder for the enhanced files; ``score_noisy=False`` skips the noisy input's own scores.
    The model's train/eval mode is restored afterwards, so the training loop can call this for
    validation.
    """
    if not pairs:
        raise DfkdError("no pairs to evaluate")
    model_rate(model)
    device = _model_device(model, device)
    was_training = model.training
    model.eval().to(device)
    save_dir = Path(save_enhanced) if save_enhanced is not None else None
    try:
        return score_audio(
            _model_jobs(model, pairs, device, save_dir), len(pairs),
            label or str(getattr(model, "ARCH", "model")), with_noisy=True, metrics=metrics,
            workers=workers, out_dir=out_dir, score_noisy=score_noisy, progress=progress,
        )
    finally:
        model.train(was_training)

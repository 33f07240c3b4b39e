"""Score a model on a test set, or a folder of enhanced files against a clean folder.

This module's one job is to get the audio to score and hand it to :mod:`dfkd.evaluation.scoring`:
``dfkd evaluate`` and the experiment grid call :func:`evaluate_model` (run a model over the test
pairs) or :func:`evaluate_folders` (pair enhanced files with clean ones), which return a
:class:`~dfkd.evaluation.summary.Summary` and optionally write it to a folder (per_file.csv,
summary.json, summary.md). What one number means is :mod:`dfkd.evaluation.metrics`.

Metrics run in worker processes (:mod:`dfkd.evaluation.scoring`), so a clip that makes PESQ fail or crash is
reported and skipped. Enhancement runs whole utterances, at the model's rate (16 kHz), without
autograd; inputs at other rates are resampled when read (:func:`dfkd.audio.load_mono`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..audio import AUDIO_EXTENSIONS, load_mono, write_audio
from ..data.layouts import Pair, audio_by_stem
from ..errors import DfkdError
from ..models.inference import enhance_utterance
from .metrics import DEFAULT_METRICS, NEEDS_NOISY, check_metrics
from .scoring import ClipJob, score_clips
from .summary import Summary
from .. import SAMPLE_RATE

# Enhanced and clean files of one utterance may differ by a little padding (frame multiples);
# beyond this, the files are not the same utterance and the evaluation would be meaningless.
LENGTH_TOLERANCE = 0.05



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
    files = {role: audio_by_stem(folder, role) for role, folder in folders.items()}
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

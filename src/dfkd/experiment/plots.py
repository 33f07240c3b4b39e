"""The figures of the comparison report (PNG files, drawn with matplotlib's Agg canvas).

* :func:`plot_deltas`: each method's paired per-clip difference over the ``none`` student, per
  metric and architecture, with standard-error bars: the figure that says whether KD helped.
* :func:`plot_crossover`: the distribution of the crossover frequency that the DFKD Frequency
  Adapter chose (Yuan et al., arXiv 2502.04711) over the validation set, in Hz, one curve per rule.
* :func:`plot_validation`: validation SI-SNRi (or SI-SNR) against the training step of ``none``,
  the best baseline and every DFKD variant, mean over seeds: whether the students converged, and
  when DFKD pulled ahead or fell behind.
* :func:`plot_spectrograms`: log-magnitude spectrograms of noisy / clean / teacher / students for
  one clip, on one colour scale so that residual noise is comparable across panels.

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas directly, not pyplot:
no global backend is switched and nothing needs a display, so plotting works in tests, on servers
and inside other programs that use matplotlib themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.signal import stft as scipy_stft

from .. import SAMPLE_RATE
from ..distill.spectra import N_FFT  # the adapter's STFT: bins are 31.25 Hz apart
from ..files import atomic_write
from .tables import metric_header
from ..evaluation.metrics import DECIMALS
from .results import BASELINE, PAIRED_METRICS, TEACHER, Results

DPI = 100


def _write_png(figure: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    FigureCanvasAgg(figure)
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
    return path


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    return _write_png(figure, path)


def plot_deltas(results: Results, path: str | os.PathLike,
                metrics: Sequence[str] = PAIRED_METRICS) -> Path | None:
    """Bar chart of ``model - none`` (paired mean ± standard error over clips) per metric.

    One panel per metric; along x the student methods, one bar per architecture; the teacher's
    own difference (what there was to gain) is given in the legend. Returns ``None`` when no
    architecture has a ``none`` run.
    """
    metrics = [m for m in metrics if m in results.metrics]
    archs = [a for a in results.architectures() if results.paired.get(a)]
    # The teacher's lead (~2 dB) would flatten the KD bars (~0.1 dB): it goes into the legend.
    models = list(dict.fromkeys(m for a in archs for m in results.paired[a] if m != TEACHER))
    if not metrics or not models:
        return None
    figure = Figure(figsize=(max(6.0, 1.1 * len(models) + 2), 2.8 * len(metrics)))
    width = 0.8 / len(archs)
    x = np.arange(len(models))
    for panel, metric in enumerate(metrics):
        axes = figure.add_subplot(len(metrics), 1, panel + 1)
        for k, arch in enumerate(archs):
            diffs = [results.paired[arch].get(m, {}).get(metric, {}) for m in models]
            means = np.array([d.get("mean", np.nan) if d else np.nan for d in diffs], dtype=float)
            errors = np.array([d.get("se", np.nan) if d else np.nan for d in diffs], dtype=float)
            teacher = results.paired[arch].get(TEACHER, {}).get(metric, {})
            label = arch + (f" (teacher {teacher['mean']:+.{DECIMALS.get(metric, 2)}f})"
                            if teacher.get("clips") else "")
            axes.bar(x + (k - (len(archs) - 1) / 2) * width, means, width,
                     yerr=np.nan_to_num(errors), capsize=3, label=label)
        axes.axhline(0.0, color="black", linewidth=0.8)
        axes.set_xticks(x)
        axes.set_xticklabels(models, rotation=20, ha="right")
        axes.set_ylabel(f"Δ {metric_header(metric)}")
        axes.set_title(f"{metric_header(metric)}: paired difference over `{BASELINE}` "
                       "(mean ± s.e. over clips)", fontsize=10)
        if panel == 0:
            axes.legend(fontsize=8)
        axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def crossover_hz(counts: Sequence[int] | np.ndarray, n_fft: int = N_FFT,
                 sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Bin-count histogram -> (bin centre frequencies in Hz, counts) of the bins that occurred."""
    counts = np.asarray(counts, dtype=np.float64)
    hz = np.arange(len(counts)) * (sample_rate / n_fft)
    used = counts > 0
    return hz[used], counts[used]


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def plot_crossover(histograms: Mapping[str, Mapping[str, Sequence[int]]], path: str | os.PathLike,
                   n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> Path | None:
    """Histogram in Hz of the crossover the adapter chose, per architecture and adapter rule.

    Args:
        histograms: arch -> rule label -> counts per STFT bin (index = bin) over the non-silent
            frames of the validation set.
        path: the PNG to write.

    The x axis is logarithmic: the paper's maximum-slope rule lands around the first harmonic
    (~125 Hz) while energy roll-off lands in the kHz range; on a linear axis one of them would be
    a single spike. Bin 0 (0 Hz) is drawn at half a bin.
    """
    archs = [a for a, rules in histograms.items() if any(np.sum(c) for c in rules.values())]
    if not archs:
        return None
    bin_hz = sample_rate / n_fft
    edges = np.geomspace(bin_hz / 2, sample_rate / 2, 49)
    figure = Figure(figsize=(7.0, 2.6 * len(archs)))
    for panel, arch in enumerate(archs):
        axes = figure.add_subplot(len(archs), 1, panel + 1)
        for rule, counts in histograms[arch].items():
            hz, weight = crossover_hz(counts, n_fft, sample_rate)
            if not weight.size:
                continue
            median = weighted_median(hz, weight)
            at_dc = float(weight[hz == 0].sum() / weight.sum())
            dc = f", {100 * at_dc:.0f} % at 0 Hz" if at_dc > 0 else ""
            axes.hist(np.maximum(hz, bin_hz / 2), bins=edges, weights=weight / weight.sum(),
                      histtype="step", linewidth=1.5, label=f"{rule} (median {median:.0f} Hz{dc})")
        axes.set_xscale("log")
        axes.set_xlim(edges[0], edges[-1])
        # the leftmost bar is bin 0 (drawn at half a bin on the log axis): name it
        axes.axvline(bin_hz / 2 * 1.1, color="0.6", linewidth=0.8, linestyle=":")
        axes.text(bin_hz / 2 * 1.15, 0.97, "0 Hz (DC bin)", transform=axes.get_xaxis_transform(),
                  fontsize=7, va="top", color="0.35")
        axes.set_xlabel("crossover frequency (Hz); the first bar is 0 Hz, the DC bin")
        axes.set_ylabel("fraction of frames")
        axes.set_title(f"{arch}: DFKD crossover over the validation set", fontsize=10)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_validation(curves: Mapping[str, Mapping[str, tuple[str, Sequence[int], Sequence[float]]]],
                    path: str | os.PathLike) -> Path | None:
    """One panel per architecture: row label -> (metric, steps, mean validation value over seeds)
    (:func:`dfkd.experiment.curves.mean_curve`). ``None`` when no architecture has a curve."""
    archs = [a for a, rows in curves.items() if any(len(c[1]) for c in rows.values())]
    if not archs:
        return None
    figure = Figure(figsize=(7.0, 2.8 * len(archs)))
    for panel, arch in enumerate(archs):
        axes = figure.add_subplot(len(archs), 1, panel + 1)
        metrics = []
        for label, (metric, steps, values) in curves[arch].items():
            metrics.append(metric)
            axes.plot(steps, values, marker="o", markersize=3, linewidth=1.3, label=label)
        axes.set_xlabel("training step")
        # rows may fall back to SI-SNR when a run did not log the improvement: say which is drawn
        axes.set_ylabel("valid " + " / ".join(metric_header(m) for m in dict.fromkeys(metrics)),
                        fontsize=8)
        axes.set_title(f"{arch}: validation during training (mean over seeds)", fontsize=10)
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    return _save(figure, path)


def log_spectrogram(wave: np.ndarray, sample_rate: int = SAMPLE_RATE,
                    n_fft: int = N_FFT, hop: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frequencies, times, magnitude in dB) of a clip with the adapter's STFT (Hann 512 / 128)."""
    freqs, times, spec = scipy_stft(np.asarray(wave, dtype=np.float64), fs=sample_rate,
                                    window="hann", nperseg=n_fft, noverlap=n_fft - hop)
    return freqs, times, 20.0 * np.log10(np.abs(spec) + 1e-8)


def plot_spectrograms(title: str, waves: Sequence[tuple[str, np.ndarray]], path: str | os.PathLike,
                      sample_rate: int = SAMPLE_RATE, dynamic_range_db: float = 80.0) -> Path:
    """One panel per ``(label, waveform)``, all on the colour scale of the loudest panel."""
    if not waves:
        raise ValueError("no waveforms to plot")
    spectra = [(label, *log_spectrogram(wave, sample_rate)) for label, wave in waves]
    top = max(float(db.max()) for _, _, _, db in spectra)
    figure = Figure(figsize=(8.0, 1.7 * len(spectra) + 0.6))
    # a fixed layout with the colour bar in its own column (tight_layout cannot place a bar shared
    # by every panel)
    grid = figure.add_gridspec(len(spectra), 2, width_ratios=[40, 1], left=0.08, right=0.9,
                               top=0.93, bottom=0.08, hspace=0.45, wspace=0.04)
    image = axes = None
    for panel, (label, freqs, times, db) in enumerate(spectra):
        axes = figure.add_subplot(grid[panel, 0])
        image = axes.pcolormesh(times, freqs / 1000.0, db, shading="auto", cmap="magma",
                                vmin=top - dynamic_range_db, vmax=top)
        axes.set_ylabel("kHz")
        axes.set_title(label, fontsize=9, loc="left")
        if panel < len(spectra) - 1:
            axes.set_xticklabels([])
    axes.set_xlabel("time (s)")
    figure.suptitle(title, fontsize=10)
    figure.colorbar(image, cax=figure.add_subplot(grid[:, 1]), label="dB")
    return _write_png(figure, path)

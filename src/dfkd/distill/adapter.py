"""The Frequency Adapter of DFKD: a per-utterance, per-frame split into a low and a high band.

Yuan et al., "Dynamic Frequency-Adaptive Knowledge Distillation for Speech Enhancement",
arXiv 2502.04711, 2025 — the adapter finds, for every input and frame, a *crossover* bin at the
maximum slope of a first-order derivative of the teacher's output spectrum. The exact formula
below is the public re-implementation used as the DFKD baseline of DISPatch (Kim & Choi,
arXiv 2509.15922), as fixed by ``docs/method.md`` of this project:

1. running maximum over frequency  ``F_o(f) = max_{f' <= f} |T(f')|``
2. relative first difference       ``D(f) = (F_o(f+1) - F_o(f)) / (F_o(f) + eps)``
3. crossover bin                   ``m = argmax_f D(f)``
4. low band ``f <= m``, high band ``f >= m`` (``inclusive``; ``exclusive`` gives ``m`` to the low
   band only).

On real speech this rule lands at the first strong harmonic (median ~125 Hz); that is what the
formula does, so it is kept as is and two other rules are offered beside it for the ablation:
``energy-rolloff:q`` (the bin below which a fraction ``q`` of the frame's energy lies) and
``fixed:HZ`` (a static split, which turns DFKD into a two-band sub-band KD).

Three readings of "maximum slope" test why the rule often lands on bin 0 (the relative difference
explodes where the DC bin of an SI-SNR-trained output is near zero):

* ``cummax-slope:MIN_HZ`` searches only bins at or above ``MIN_HZ`` for the crossover;
* ``cummax-slope-db[:FLOOR_DB]`` takes the slope of the running maximum of the log-magnitude (dB),
  each bin floored at ``FLOOR_DB`` (default 60) below the frame's peak: a near-zero DC bin then
  rises by at most that much, not by orders of magnitude;
* ``cummax-slope-smooth[:BINS]`` smooths the magnitude over ``BINS`` bins (default 5, a centred
  moving average) before the running maximum.

The mask is computed on the teacher magnitude without gradient and applied to teacher and student
alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import SAMPLE_RATE
from ..errors import DfkdError
from .spectra import N_FFT

RULES: tuple[str, ...] = ("cummax-slope", "cummax-slope-db", "cummax-slope-smooth", "energy-rolloff", "fixed")
CROSSOVER_MODES: tuple[str, ...] = ("inclusive", "exclusive")
DEFAULT_ROLLOFF = 0.9
DEFAULT_FLOOR_DB = 60.0
DEFAULT_SMOOTH_BINS = 5


@dataclass(frozen=True)
class AdapterRule:
    """A parsed adapter rule: ``name`` in :data:`RULES` and its numeric parameter (or ``None``)."""

    name: str
    value: float | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value:g}"


_DEFAULTS = {"energy-rolloff": DEFAULT_ROLLOFF, "cummax-slope-db": DEFAULT_FLOOR_DB,
             "cummax-slope-smooth": float(DEFAULT_SMOOTH_BINS)}


def parse_rule(spec: str) -> AdapterRule:
    """Parse ``cummax-slope[:MIN_HZ]``, ``cummax-slope-db[:FLOOR_DB]``, ``cummax-slope-smooth[:BINS]``,
    ``energy-rolloff[:q]`` or ``fixed:HZ`` (user input: clear errors)."""
    name, _, raw = str(spec).strip().partition(":")
    if name not in RULES:
        raise DfkdError(
            f"unknown adapter rule {spec!r}; choose cummax-slope[:MIN_HZ], cummax-slope-db[:FLOOR_DB], "
            "cummax-slope-smooth[:BINS], energy-rolloff:Q or fixed:HZ"
        )
    if not raw and name == "cummax-slope":
        return AdapterRule(name)
    if not raw and name in _DEFAULTS:
        return AdapterRule(name, _DEFAULTS[name])
    try:
        value = float(raw)
    except ValueError:
        raise DfkdError(f"adapter rule {spec!r}: {raw!r} is not a number") from None
    if name == "energy-rolloff" and not 0.0 < value <= 1.0:
        raise DfkdError(f"adapter rule {spec!r}: the energy fraction must be in (0, 1]")
    if name in ("fixed", "cummax-slope") and value < 0:
        raise DfkdError(f"adapter rule {spec!r}: the frequency must be >= 0 Hz")
    if name == "cummax-slope-db" and value <= 0:
        raise DfkdError(f"adapter rule {spec!r}: the floor must be > 0 dB below the peak")
    if name == "cummax-slope-smooth" and (value != int(value) or value < 1 or int(value) % 2 == 0):
        raise DfkdError(f"adapter rule {spec!r}: the smoothing width must be an odd number of bins")
    return AdapterRule(name, value)


def cummax_slope_bins(magnitude: torch.Tensor, eps: float = 1e-8, min_bin: int = 0) -> torch.Tensor:
    """Crossover at the largest relative rise of the running spectral maximum.

    ``magnitude`` is ``(..., bins)`` (frequency last); returns ``(...)`` bin indices in
    ``[min_bin, bins - 2]``. ``argmax`` returns the first of equal maxima, so a flat (e.g.
    all-zero) frame gets ``min_bin``.
    """
    running_max = torch.cummax(magnitude, dim=-1).values
    rise = (running_max[..., 1:] - running_max[..., :-1]) / (running_max[..., :-1] + eps)
    return _argmax_from(rise, min_bin)


def cummax_slope_db_bins(magnitude: torch.Tensor, floor_db: float = DEFAULT_FLOOR_DB,
                         min_bin: int = 0) -> torch.Tensor:
    """Crossover at the largest rise of the running maximum of the dB spectrum.

    Each bin is floored at ``floor_db`` below the frame's peak first, so a near-zero bin rises by
    at most ``floor_db``; a silent frame (all bins equal after the floor) gets bin 0.
    """
    peak = magnitude.amax(dim=-1, keepdim=True)
    floor = (peak * 10.0 ** (-floor_db / 20.0)).clamp_min(1e-12)
    level = 20.0 * torch.log10(torch.maximum(magnitude, floor))
    running_max = torch.cummax(level, dim=-1).values
    return _argmax_from(running_max[..., 1:] - running_max[..., :-1], min_bin)


def smoothed_magnitude(magnitude: torch.Tensor, width: int) -> torch.Tensor:
    """Centred moving average over ``width`` bins (fewer at the edges: no zero padding counted)."""
    flat = magnitude.reshape(-1, 1, magnitude.shape[-1])
    smooth = torch.nn.functional.avg_pool1d(flat, width, stride=1, padding=width // 2,
                                            count_include_pad=False)
    return smooth.reshape(magnitude.shape)


def _argmax_from(rise: torch.Tensor, min_bin: int) -> torch.Tensor:
    """argmax over bins ``>= min_bin`` (clamped so that one bin is always left)."""
    start = min(max(int(min_bin), 0), rise.shape[-1] - 1)
    return rise[..., start:].argmax(dim=-1) + start


def energy_rolloff_bins(magnitude: torch.Tensor, fraction: float = DEFAULT_ROLLOFF) -> torch.Tensor:
    """Crossover at the first bin where the cumulative frame energy reaches ``fraction`` of it all.

    ``(..., bins) -> (...)`` (frequency last); a silent frame gets bin 0.
    """
    cumulative = torch.cumsum(magnitude.pow(2), dim=-1)
    reached = cumulative >= fraction * cumulative[..., -1:]
    # argmax over a bool tensor gives the first True; the last bin always satisfies it.
    return reached.to(torch.uint8).argmax(dim=-1)


def hz_to_bin(hz: float, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> int:
    """Nearest STFT bin of a frequency, clamped to the one-sided range."""
    return int(min(max(round(hz * n_fft / sample_rate), 0), n_fft // 2))


def bin_to_hz(bins: torch.Tensor, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Centre frequency in Hz of STFT bins."""
    return bins.to(torch.float32) * (sample_rate / n_fft)


class FrequencyAdapter:
    """Chooses the crossover bin per utterance and frame and builds the two band masks.

    Args:
        rule: ``cummax-slope`` (default, the paper's maximum-slope rule), ``cummax-slope:MIN_HZ``,
            ``cummax-slope-db[:FLOOR_DB]``, ``cummax-slope-smooth[:BINS]``, ``energy-rolloff:q`` or
            ``fixed:HZ``; a string or a parsed :class:`AdapterRule`.
        crossover: ``inclusive`` (the crossover bin belongs to both bands, as in method.md) or
            ``exclusive`` (it belongs to the low band only).
        n_fft: STFT size the spectra were computed with (for ``fixed:HZ``).
        sample_rate: sample rate of the waveforms (for ``fixed:HZ`` and Hz reports).
        eps: denominator guard of the relative difference in ``cummax-slope``.
    """

    def __init__(
        self,
        rule: str | AdapterRule = "cummax-slope",
        crossover: str = "inclusive",
        n_fft: int = N_FFT,
        sample_rate: int = SAMPLE_RATE,
        eps: float = 1e-8,
    ) -> None:
        self.rule = rule if isinstance(rule, AdapterRule) else parse_rule(rule)
        if crossover not in CROSSOVER_MODES:
            raise DfkdError(f"unknown crossover mode {crossover!r}; choose inclusive or exclusive")
        self.crossover = crossover
        self.n_fft = n_fft
        self.sample_rate = sample_rate
        self.eps = eps

    def __repr__(self) -> str:
        return f"FrequencyAdapter(rule={str(self.rule)!r}, crossover={self.crossover!r})"

    @torch.no_grad()
    def crossover_bins(self, teacher_magnitude: torch.Tensor, freq_dim: int = 1) -> torch.Tensor:
        """Crossover bin per utterance and frame: ``(batch, bins, frames) -> (batch, frames)``.

        ``freq_dim=-1`` takes ``(batch, frames, bins)`` (the layout of :func:`stft_frames`).
        """
        magnitude = teacher_magnitude.detach().movedim(freq_dim, -1).contiguous()
        if self.rule.name == "cummax-slope":
            min_bin = 0 if self.rule.value is None else hz_to_bin(self.rule.value, self.n_fft, self.sample_rate)
            return cummax_slope_bins(magnitude, self.eps, min_bin)
        if self.rule.name == "cummax-slope-db":
            return cummax_slope_db_bins(magnitude, float(self.rule.value))
        if self.rule.name == "cummax-slope-smooth":
            return cummax_slope_bins(smoothed_magnitude(magnitude, int(self.rule.value)), self.eps)
        if self.rule.name == "energy-rolloff":
            return energy_rolloff_bins(magnitude, float(self.rule.value))
        bins = magnitude.shape[-1]
        split = min(hz_to_bin(float(self.rule.value), self.n_fft, self.sample_rate), bins - 1)
        return torch.full(magnitude.shape[:-1], split, dtype=torch.long, device=magnitude.device)

    def band_masks(
        self, crossover_bins: torch.Tensor, n_bins: int, freq_dim: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean masks of the low and the high band, ``(batch, bins, frames)``.

        ``freq_dim=-1`` gives ``(batch, frames, bins)`` masks instead.
        """
        freq = torch.arange(n_bins, device=crossover_bins.device)
        if freq_dim == -1:
            freq, split = freq[None, None, :], crossover_bins[..., None]
        else:
            freq, split = freq[None, :, None], crossover_bins[:, None, :]
        low = freq <= split
        high = freq >= split if self.crossover == "inclusive" else freq > split
        return low, high

    def bins_to_hz(self, bins: torch.Tensor) -> torch.Tensor:
        """Crossover bins in Hz (for the histogram of chosen splits)."""
        return bin_to_hz(bins, self.n_fft, self.sample_rate)

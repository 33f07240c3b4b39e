"""Composite quality measures CSIG, CBAK and COVL.

Hu & Loizou, "Evaluation of Objective Quality Measures for Speech Enhancement", IEEE TASLP 16(1),
2008. Each composite measure is a linear regression, fitted to listening tests, of four objective
measures:

- LLR: log-likelihood ratio between the LPC models of the clean and the processed frame
  (Quackenbush, Barnwell & Clements, "Objective Measures of Speech Quality", 1988);
- WSS: weighted spectral slope distance over 25 critical bands (Klatt, ICASSP 1982);
- segSNR: segmental SNR, each frame clipped to [-10, 35] dB;
- PESQ (ITU-T P.862; see :mod:`dfkd.evaluation.metrics`).

This is our own vectorised NumPy port of Loizou's MATLAB ``composite.m`` (the code that defines the
numbers the field reports), with his framing (30 ms Hann frames, 75 % overlap), his quirks (the
critical-band table stops at 3.8 kHz even at 16 kHz; the local-peak search of WSS returns the band
*before* the peak) and his 95 % trimming of the worst LLR and WSS frames. It agrees with
``pysepm-evo``'s ``llr``/``wss``/``SNRseg`` (the tests use them as reference); ``pysepm-evo``'s own
``composite`` cannot be called (it reads an undefined PESQ variable), so the PESQ input follows the
convention of the field's Python evaluation scripts (e.g. CMGAN's ``compute_metrics``): wide-band
PESQ (P.862.2) at 16 kHz, narrow-band P.862 at 8 kHz.
"""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps, which Loizou's code adds everywhere
TRIM = 0.95  # keep the best 95 % of LLR and WSS frames, as composite.m does

# Critical bands of Loizou's wss(): centre frequencies and bandwidths in Hz.
_CENTRE_HZ = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717, 904.128,
    1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08, 2446.71, 2701.97,
    2978.04, 3276.17, 3597.63,
])
_BANDWIDTH_HZ = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255, 276.072,
    298.126, 321.465, 346.136,
])


def _matlab_round(value: float) -> int:
    """MATLAB ``round`` (half away from zero); Python's ``round`` goes half to even."""
    return int(np.floor(value + 0.5))


def _frames(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """Hann-windowed 30 ms frames with a 7.5 ms hop, counted as Loizou does.

    MATLAB loops ``1:(len - win) / hop`` frames, i.e. ``floor((len - win) / hop)``: the last full
    frame is left out whenever the length is a multiple of the hop.
    """
    win = _matlab_round(0.03 * sample_rate)
    hop = win // 4
    count = (len(signal) - win) // hop
    if count < 1:
        raise ValueError(f"signal of {len(signal)} samples is shorter than two 30 ms frames")
    n = np.arange(1, win + 1)
    hann = 0.5 * (1.0 - np.cos(2.0 * np.pi * n / (win + 1)))  # MATLAB hanning(), no zero ends
    view = np.lib.stride_tricks.sliding_window_view(signal, win)[::hop][:count]
    return view * hann


def _trimmed_mean(values: np.ndarray) -> float:
    keep = _matlab_round(len(values) * TRIM)
    return float(np.mean(np.sort(values)[:keep]))


def segmental_snr(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Mean segmental SNR in dB, each frame clipped to [-10, 35] dB (Hu & Loizou 2008)."""
    clean_frames = _frames(np.asarray(clean, np.float64), sample_rate)
    proc_frames = _frames(np.asarray(processed, np.float64), sample_rate)
    signal_energy = np.sum(clean_frames**2, axis=-1)
    noise_energy = np.sum((clean_frames - proc_frames) ** 2, axis=-1)
    seg = 10.0 * np.log10(signal_energy / (noise_energy + EPS) + EPS)
    return float(np.mean(np.clip(seg, -10.0, 35.0)))


def _autocorrelation(frames: np.ndarray, order: int) -> np.ndarray:
    """Lags 0..order of each frame, shape (frames, order + 1)."""
    length = frames.shape[-1]
    return np.stack(
        [np.sum(frames[:, : length - k] * frames[:, k:], axis=-1) for k in range(order + 1)], -1
    )


def _levinson(autocorr: np.ndarray) -> np.ndarray:
    """LPC error filters A = [1, a_1, ..., a_p] of every frame by Levinson-Durbin recursion."""
    frames, lags = autocorr.shape
    order = lags - 1
    poly = np.zeros((frames, lags))
    poly[:, 0] = 1.0
    error = autocorr[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(1, order + 1):
            acc = np.sum(poly[:, :i] * autocorr[:, i:0:-1], axis=-1)
            reflection = -acc / error
            previous = poly.copy()
            poly[:, 1:i] = previous[:, 1:i] + reflection[:, None] * previous[:, i - 1 : 0 : -1]
            poly[:, i] = reflection
            error = (1.0 - reflection**2) * error
    return poly


def _toeplitz_quadratic(poly: np.ndarray, autocorr: np.ndarray) -> np.ndarray:
    """A R A^T per frame, R the Toeplitz matrix of the autocorrelation lags."""
    lags = autocorr.shape[-1]
    index = np.abs(np.arange(lags)[:, None] - np.arange(lags)[None, :])
    toeplitz = autocorr[:, index]  # (frames, lags, lags)
    return np.einsum("fi,fij,fj->f", poly, toeplitz, poly)


def llr(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Log-likelihood ratio, mean over the best 95 % of frames, not clipped (composite.m).

    LPC order 16 at 16 kHz, 10 below 10 kHz (Loizou). ``eps`` is added to both signals, as in
    ``pysepm``, so that the LPC model of a digitally silent frame stays defined.
    """
    order = 10 if sample_rate < 10000 else 16
    clean_frames = _frames(np.asarray(clean, np.float64) + EPS, sample_rate)
    proc_frames = _frames(np.asarray(processed, np.float64) + EPS, sample_rate)
    r_clean = _autocorrelation(clean_frames, order)
    r_proc = _autocorrelation(proc_frames, order)
    a_clean = _levinson(r_clean)
    a_proc = _levinson(r_proc)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _toeplitz_quadratic(a_proc, r_clean) / _toeplitz_quadratic(a_clean, r_clean)
        # Degenerate frames (NaN, non-positive) get pysepm's values: sorted to the end and, being
        # few, trimmed away instead of turning the mean into NaN.
        ratio[np.isnan(ratio)] = np.inf
        ratio[ratio <= 0] = 1000.0
        distortion = np.log(ratio)
    return _trimmed_mean(distortion)


def _critical_band_filters(sample_rate: int, half_fft: int) -> np.ndarray:
    """Gaussian-shaped critical-band filters over the FFT bins, cut at their -30 dB points."""
    max_freq = sample_rate / 2.0
    bins = np.arange(half_fft)
    centre = np.floor(_CENTRE_HZ / max_freq * half_fft)
    width = _BANDWIDTH_HZ / max_freq * half_fft
    norm = np.log(_BANDWIDTH_HZ[0]) - np.log(_BANDWIDTH_HZ)
    distance = (bins[None, :] - centre[:, None]) / width[:, None]
    filters = np.exp(-11.0 * distance**2 + norm[:, None])
    min_factor = np.exp(-30.0 / (2.0 * 2.303))
    return filters * (filters > min_factor)


def _local_peaks(slope: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Klatt's nearest spectral peak per band, as Loizou's loop finds it (frames x bands-1).

    A rising band searches right for the first non-rising band n and takes energy[n - 1]; a
    falling band searches left for the last rising band n and takes energy[n + 1].
    """
    frames, slopes = slope.shape
    rising = slope > 0
    next_flat = np.empty((frames, slopes), dtype=np.int64)  # first n >= i with slope[n] <= 0
    following = np.full(frames, slopes)
    for i in range(slopes - 1, -1, -1):
        following = np.where(rising[:, i], following, i)
        next_flat[:, i] = following
    last_rise = np.empty((frames, slopes), dtype=np.int64)  # last n <= i with slope[n] > 0
    preceding = np.full(frames, -1)
    for i in range(slopes):
        preceding = np.where(rising[:, i], i, preceding)
        last_rise[:, i] = preceding
    peak_band = np.where(rising, next_flat - 1, last_rise + 1)
    return np.take_along_axis(energy, peak_band, axis=-1)


def wss(clean: np.ndarray, processed: np.ndarray, sample_rate: int) -> float:
    """Weighted spectral slope distance, mean over the best 95 % of frames (Klatt 1982)."""
    k_max, k_locmax = 20.0, 1.0  # Klatt's suggested constants (Loizou's wss())
    clean_frames = _frames(np.asarray(clean, np.float64) + EPS, sample_rate)
    proc_frames = _frames(np.asarray(processed, np.float64) + EPS, sample_rate)
    n_fft = int(2 ** np.ceil(np.log2(2 * clean_frames.shape[-1])))
    half = n_fft // 2
    filters = _critical_band_filters(sample_rate, half)

    def band_db(frames: np.ndarray) -> np.ndarray:
        power = np.abs(np.fft.rfft(frames, n_fft, axis=-1)[:, :half]) ** 2
        return 10.0 * np.log10(np.maximum(power @ filters.T, 1e-10))

    clean_db, proc_db = band_db(clean_frames), band_db(proc_frames)
    clean_slope, proc_slope = np.diff(clean_db, axis=-1), np.diff(proc_db, axis=-1)

    def weights(db: np.ndarray, slope: np.ndarray) -> np.ndarray:
        body = db[:, :-1]
        w_max = k_max / (k_max + db.max(axis=-1, keepdims=True) - body)
        w_locmax = k_locmax / (k_locmax + _local_peaks(slope, db) - body)
        return w_max * w_locmax

    weight = 0.5 * (weights(clean_db, clean_slope) + weights(proc_db, proc_slope))
    distortion = np.sum(weight * (clean_slope - proc_slope) ** 2, axis=-1) / np.sum(weight, axis=-1)
    return _trimmed_mean(distortion)


def composite_from_parts(
    pesq_score: float, llr_value: float, wss_value: float, segsnr_value: float
) -> dict[str, float]:
    """Hu & Loizou's (2008) regressions, each clipped to the MOS range [1, 5]."""
    csig = 3.093 - 1.029 * llr_value + 0.603 * pesq_score - 0.009 * wss_value
    cbak = 1.634 + 0.478 * pesq_score - 0.007 * wss_value + 0.063 * segsnr_value
    covl = 1.594 + 0.805 * pesq_score - 0.512 * llr_value - 0.007 * wss_value
    return {
        "csig": float(np.clip(csig, 1.0, 5.0)),
        "cbak": float(np.clip(cbak, 1.0, 5.0)),
        "covl": float(np.clip(covl, 1.0, 5.0)),
    }


def composite(
    clean: np.ndarray, processed: np.ndarray, sample_rate: int, pesq_score: float
) -> dict[str, float]:
    """CSIG, CBAK and COVL of ``processed`` against ``clean`` given their PESQ score."""
    return composite_from_parts(
        pesq_score,
        llr(clean, processed, sample_rate),
        wss(clean, processed, sample_rate),
        segmental_snr(clean, processed, sample_rate),
    )

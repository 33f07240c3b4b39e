"""Speech-enhancement metrics of one clip: one function per metric, and :func:`score_clip`.

Metric keys (all "higher is better"):

- ``pesq_wb``: wide-band PESQ, MOS-LQO (ITU-T P.862.2), via the ``pesq`` package;
- ``pesq_nb``: narrow-band PESQ, MOS-LQO (ITU-T P.862 + P.862.1);
- ``stoi``: short-time objective intelligibility (Taal, Hendriks, Heusdens & Jensen, "An Algorithm
  for Intelligibility Prediction of Time-Frequency Weighted Noisy Speech", IEEE TASLP 2011), via
  ``pystoi``;
- ``estoi``: extended STOI (Jensen & Taal, "An Algorithm for Predicting the Intelligibility of
  Speech Masked by Modulated Noise Maskers", IEEE/ACM TASLP 2016), via ``pystoi``;
- ``si_snr``: scale-invariant SNR in dB (Le Roux, Wisdom, Erdogan & Hershey, "SDR - half-baked or
  well done?", ICASSP 2019), computed by :func:`dfkd.losses.si_snr` so that the metric and the
  training loss are the same code;
- ``si_snri``: SI-SNR improvement over the noisy input, in dB (needs the noisy clip);
- ``snr``: plain SNR of the enhanced clip against the clean one, in dB (no rescaling);
- ``csig``, ``cbak``, ``covl``: composite measures (Hu & Loizou 2008), see :mod:`dfkd.evaluation.composite`;
- ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``: optional, reference-free DNSMOS P.835, see
  :mod:`dfkd.evaluation.dnsmos`.

Clips are 1-D float arrays at ``sample_rate``; the enhanced, clean and noisy clips of one utterance
are trimmed to the shortest of them (models and toolkits may pad a few samples). A metric that
cannot score a clip (e.g. PESQ on silence or on less than 0.25 s) raises :class:`MetricError`.
Note that PESQ's C code may also crash the whole process on odd input: to survive that, score
clips through :mod:`dfkd.evaluation.scoring`, which runs them in worker processes.
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, Sequence

import numpy as np
from scipy.signal import resample_poly

from . import composite as _composite
from ..errors import DfkdError

CORE_METRICS: tuple[str, ...] = (
    "pesq_wb", "pesq_nb", "stoi", "estoi", "si_snr", "si_snri", "snr", "csig", "cbak", "covl",
)
DNSMOS_METRICS: tuple[str, ...] = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")
ALL_METRICS: tuple[str, ...] = CORE_METRICS + DNSMOS_METRICS
DEFAULT_METRICS: tuple[str, ...] = CORE_METRICS  # DNSMOS is an optional extra
NEEDS_NOISY: frozenset[str] = frozenset({"si_snri"})
# How each metric is shown in every table (dfkd evaluate's summary.md, the experiment's results).
LABELS: dict[str, str] = {
    "pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI", "estoi": "ESTOI",
    "si_snr": "SI-SNR", "si_snri": "SI-SNRi", "snr": "SNR", "csig": "CSIG", "cbak": "CBAK",
    "covl": "COVL", "dnsmos_sig": "DNSMOS-SIG", "dnsmos_bak": "DNSMOS-BAK",
    "dnsmos_ovrl": "DNSMOS-OVRL",
}
UNITS: dict[str, str] = {"si_snr": "dB", "si_snri": "dB", "snr": "dB"}
DECIMALS: dict[str, int] = {"stoi": 3, "estoi": 3}  # others: 2
_PESQ_RATE = 16000


class MetricError(DfkdError):
    """A metric could not score a clip (silent, too short, non-finite...)."""


def check_metrics(names: Iterable[str]) -> list[str]:
    """Validate metric names (any order, duplicates dropped); returns them in canonical order."""
    names = list(names)
    unknown = sorted(set(names) - set(ALL_METRICS))
    if unknown:
        raise DfkdError(
            f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}"
        )
    return [name for name in ALL_METRICS if name in names]


def _as_clip(audio: np.ndarray, what: str) -> np.ndarray:
    clip = np.asarray(audio)
    # float32 stays float32: pesq and pystoi then see exactly what a direct call would pass them
    if clip.dtype not in (np.float32, np.float64):
        clip = clip.astype(np.float64)
    if clip.ndim != 1:
        clip = np.squeeze(clip)
        if clip.ndim != 1:
            raise MetricError(f"{what}: expected a mono clip, got shape {np.shape(audio)}")
    if not np.all(np.isfinite(clip)):
        raise MetricError(f"{what}: clip holds NaN or infinite samples")
    return clip


def _aligned(*clips: np.ndarray) -> list[np.ndarray]:
    length = min(len(c) for c in clips)
    return [c[:length] for c in clips]


def _to_rate(clip: np.ndarray, sample_rate: int, target: int) -> np.ndarray:
    if sample_rate == target:
        return clip
    return resample_poly(clip, target, sample_rate)


def _pesq(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int, mode: str) -> float:
    from pesq import pesq as pesq_c  # imported here: workers that skip PESQ do not load it

    if sample_rate == 8000 and mode == "nb":
        rate = 8000
    else:  # P.862.2 is defined at 16 kHz; other rates are resampled to it
        rate = _PESQ_RATE
    clean_r = _to_rate(clean, sample_rate, rate)
    enhanced_r = _to_rate(enhanced, sample_rate, rate)
    if not np.any(enhanced_r) or not np.any(clean_r):
        # pesq normalises by the peak: an all-zero clip divides by zero inside the C code
        raise MetricError(f"PESQ ({mode}): a clip is all zeros")
    try:
        return float(pesq_c(rate, clean_r, enhanced_r, mode))
    except Exception as err:  # PesqError subclasses, ValueError from NaN inside the C code
        message = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else err
        raise MetricError(f"PESQ ({mode}): {type(err).__name__}: {message}") from err


def pesq_wb(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int = 16000) -> float:
    """Wide-band PESQ MOS-LQO (ITU-T P.862.2), range about 1.04-4.64."""
    enhanced, clean = _aligned(_as_clip(enhanced, "enhanced"), _as_clip(clean, "clean"))
    if sample_rate == 8000:
        raise MetricError("PESQ (wb): wide-band PESQ needs 16 kHz audio, got 8 kHz")
    return _pesq(enhanced, clean, sample_rate, "wb")


def pesq_nb(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int = 16000) -> float:
    """Narrow-band PESQ MOS-LQO (ITU-T P.862 mapped by P.862.1), range about 1.02-4.55."""
    enhanced, clean = _aligned(_as_clip(enhanced, "enhanced"), _as_clip(clean, "clean"))
    return _pesq(enhanced, clean, sample_rate, "nb")


def _stoi(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int, extended: bool) -> float:
    from pystoi import stoi as pystoi_stoi

    name = "ESTOI" if extended else "STOI"
    enhanced, clean = _aligned(_as_clip(enhanced, "enhanced"), _as_clip(clean, "clean"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(pystoi_stoi(clean, enhanced, sample_rate, extended=extended))
    # pystoi answers a clip with under 30 speech frames (~0.4 s) by a warning and a placeholder
    # of 1e-5: that is no score, and averaging it in would drag the mean down silently.
    for warning in caught:
        if "Not enough STFT frames" in str(warning.message):
            raise MetricError(f"{name}: fewer than 30 non-silent frames (clip too short or silent)")
    if not np.isfinite(value):
        raise MetricError(f"{name}: undefined for this clip (silent reference?)")
    return value


def stoi(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int = 16000) -> float:
    """STOI (Taal et al. 2011), in [0, 1]; ``pystoi`` resamples to 10 kHz internally."""
    return _stoi(enhanced, clean, sample_rate, extended=False)


def estoi(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int = 16000) -> float:
    """Extended STOI (Jensen & Taal 2016), in [0, 1]."""
    return _stoi(enhanced, clean, sample_rate, extended=True)


def si_snr(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int = 16000) -> float:
    """SI-SNR in dB (Le Roux et al. 2019), in float64 with the training loss's own code."""
    import torch  # here, not at the top: `dfkd --help` should not wait for torch

    from ..losses import si_snr as si_snr_torch

    del sample_rate  # time-domain metric: the rate does not enter
    enhanced, clean = _aligned(_as_clip(enhanced, "enhanced"), _as_clip(clean, "clean"))
    as_tensor = lambda clip: torch.from_numpy(np.asarray(clip, dtype=np.float64))  # noqa: E731
    return float(si_snr_torch(as_tensor(enhanced), as_tensor(clean)))


def si_snri(
    enhanced: np.ndarray, clean: np.ndarray, noisy: np.ndarray, sample_rate: int = 16000
) -> float:
    """SI-SNR improvement in dB: SI-SNR(enhanced) - SI-SNR(noisy), on the same samples."""
    enhanced, clean, noisy = _aligned(
        _as_clip(enhanced, "enhanced"), _as_clip(clean, "clean"), _as_clip(noisy, "noisy")
    )
    return si_snr(enhanced, clean, sample_rate) - si_snr(noisy, clean, sample_rate)


def snr(enhanced: np.ndarray, clean: np.ndarray, sample_rate: int = 16000) -> float:
    """SNR in dB: 10 log10(||clean||^2 / ||clean - enhanced||^2), without rescaling."""
    del sample_rate
    enhanced, clean = _aligned(_as_clip(enhanced, "enhanced"), _as_clip(clean, "clean"))
    enhanced, clean = enhanced.astype(np.float64), clean.astype(np.float64)
    eps = np.finfo(np.float64).eps
    error = np.sum((clean - enhanced) ** 2)
    return float(10.0 * np.log10((np.sum(clean**2) + eps) / (error + eps)))


def composite(
    enhanced: np.ndarray,
    clean: np.ndarray,
    sample_rate: int = 16000,
    pesq_score: float | None = None,
) -> dict[str, float]:
    """CSIG, CBAK, COVL (Hu & Loizou 2008) as a dict; PESQ is wide-band at 16 kHz (nb at 8 kHz).

    Pass ``pesq_score`` when it is already known, so PESQ is not computed twice.
    """
    enhanced, clean = _aligned(_as_clip(enhanced, "enhanced"), _as_clip(clean, "clean"))
    if pesq_score is None:
        pesq_score = _pesq(enhanced, clean, sample_rate, "nb" if sample_rate == 8000 else "wb")
    try:
        return _composite.composite(clean, enhanced, sample_rate, pesq_score)
    except ValueError as err:
        raise MetricError(f"composite: {err}") from err


def dnsmos(enhanced: np.ndarray, sample_rate: int = 16000) -> dict[str, float]:
    """DNSMOS P.835 SIG/BAK/OVRL (reference-free); needs ``pip install dfkd[dnsmos]``."""
    from .dnsmos import dnsmos as _dnsmos

    return _dnsmos(_as_clip(enhanced, "enhanced"), sample_rate)


_PAIRWISE: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "pesq_nb": pesq_nb,
    "stoi": stoi,
    "estoi": estoi,
    "si_snr": si_snr,
    "snr": snr,
}


def score_clip(
    enhanced: np.ndarray,
    clean: np.ndarray,
    noisy: np.ndarray | None = None,
    sample_rate: int = 16000,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """Every requested metric of one clip, in canonical order.

    ``metrics`` defaults to :data:`DEFAULT_METRICS`. Metrics that need the noisy clip
    (``si_snri``) are skipped when ``noisy`` is None. Raises :class:`MetricError` if any
    requested metric fails: a clip is scored completely or not at all, so that every metric's
    mean is taken over the same clips.
    """
    names = check_metrics(DEFAULT_METRICS if metrics is None else metrics)
    clips = [_as_clip(enhanced, "enhanced"), _as_clip(clean, "clean")]
    if noisy is not None:
        clips.append(_as_clip(noisy, "noisy"))
    clips = _aligned(*clips)
    enhanced, clean = clips[0], clips[1]
    noisy = clips[2] if noisy is not None else None

    scores: dict[str, float] = {}
    need_wb = "pesq_wb" in names or (sample_rate != 8000 and {"csig", "cbak", "covl"} & set(names))
    if need_wb:
        scores["pesq_wb"] = pesq_wb(enhanced, clean, sample_rate)
    for name in names:
        if name in _PAIRWISE:
            scores[name] = _PAIRWISE[name](enhanced, clean, sample_rate)
        elif name == "si_snri" and noisy is not None:
            scores[name] = si_snri(enhanced, clean, noisy, sample_rate)
    if {"csig", "cbak", "covl"} & set(names):
        pesq_score = scores["pesq_wb"] if sample_rate != 8000 else scores.get("pesq_nb")
        scores.update(composite(enhanced, clean, sample_rate, pesq_score))
    if set(DNSMOS_METRICS) & set(names):
        scores.update(dnsmos(enhanced, sample_rate))
    result = {name: scores[name] for name in names if name in scores}
    bad = [name for name, value in result.items() if not np.isfinite(value)]
    if bad:  # a NaN would poison every mean it enters
        raise MetricError(f"{', '.join(bad)}: not a finite number for this clip")
    return result

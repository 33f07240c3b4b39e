"""Task losses for speech enhancement.

SI-SNR: Le Roux, Wisdom, Erdogan & Hershey, "SDR – half-baked or well done?", ICASSP 2019.
Multi-resolution STFT: Yamamoto, Song & Kim, "Parallel WaveGAN", ICASSP 2020 (arXiv 1910.11480).
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import DfkdError

EPS = 1e-8


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB over the last axis (zero-mean signals).

    ``estimate`` and ``target`` have the same shape ``(..., samples)``; returns shape ``(...)``.
    """
    estimate = estimate - estimate.mean(dim=-1, keepdim=True)
    target = target - target.mean(dim=-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    noise = estimate - projection
    ratio = projection.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return 10 * torch.log10(ratio + eps)


def neg_si_snr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The recipe loss of all three architectures: mean negative SI-SNR over the batch."""
    return -si_snr(estimate, target).mean()


def l1_waveform(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample error (the time-domain half of the L1 + multi-resolution STFT loss)."""
    return (estimate - target).abs().mean()


def complex_stft(wave: torch.Tensor, n_fft: int, hop: int, win_length: int | None = None) -> torch.Tensor:
    """One-sided complex STFT ``(batch, bins, frames)`` of ``(batch, samples)``: periodic Hann window
    of ``win_length`` (default ``n_fft``), centred frames padded with zeros (not reflection), so that
    clips shorter than half a window still work and the padding adds no energy of its own.
    """
    win_length = win_length or n_fft
    window = torch.hann_window(win_length, device=wave.device, dtype=wave.dtype)
    return torch.stft(
        wave,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )


def stft_magnitude(
    wave: torch.Tensor, n_fft: int, hop: int, win_length: int, floor: float = 1e-7
) -> torch.Tensor:
    """Magnitude ``(batch, bins, frames)`` with a Hann window of ``win_length`` (zero-padded edges).

    Floored so that the log and the square root stay finite where the signal is silent.
    """
    spec = complex_stft(wave.reshape(-1, wave.shape[-1]), n_fft, hop, win_length)
    return (spec.real.pow(2) + spec.imag.pow(2)).clamp_min(floor**2).sqrt()


# (n_fft, hop, win_length) of Yamamoto et al. 2020, Parallel WaveGAN, section 2.3 / table 1.
MRSTFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = (
    (1024, 120, 600),
    (2048, 240, 1200),
    (512, 50, 240),
)


def multi_resolution_stft(
    estimate: torch.Tensor,
    target: torch.Tensor,
    resolutions: tuple[tuple[int, int, int], ...] = MRSTFT_RESOLUTIONS,
) -> torch.Tensor:
    """Multi-resolution STFT loss (Yamamoto, Song & Kim, "Parallel WaveGAN", ICASSP 2020, eq. 1-4).

    For each resolution: spectral convergence ``|| |Y| - |Ŷ| ||_F / || |Y| ||_F`` plus the mean
    absolute log-magnitude difference; the result is the mean over resolutions.
    """
    total = estimate.new_zeros(())
    for n_fft, hop, win_length in resolutions:
        est_mag = stft_magnitude(estimate, n_fft, hop, win_length)
        ref_mag = stft_magnitude(target, n_fft, hop, win_length)
        convergence = torch.linalg.vector_norm(ref_mag - est_mag) / torch.linalg.vector_norm(ref_mag)
        log_distance = (ref_mag.log() - est_mag.log()).abs().mean()
        total = total + convergence + log_distance
    return total / len(resolutions)


def l1_mrstft(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 waveform loss + multi-resolution STFT loss (the alternative recipe loss of method.md)."""
    return l1_waveform(estimate, target) + multi_resolution_stft(estimate, target)


# name -> loss(estimate, target) -> scalar; the task loss of every training run is one of these.
TASK_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "sisnr": neg_si_snr,
    "l1": l1_waveform,
    "mrstft": multi_resolution_stft,
    "l1+mrstft": l1_mrstft,
}


def make_task_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The task loss registered as ``name`` (``sisnr`` is every architecture's recipe default)."""
    if name not in TASK_LOSSES:
        raise DfkdError(f"unknown task loss {name!r}; choose one of {', '.join(TASK_LOSSES)}")
    return TASK_LOSSES[name]

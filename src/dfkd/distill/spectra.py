"""The STFT every spectral KD method shares (method.md, "Notation"): 512-point periodic Hann, hop 128.

:func:`stft_frames` gives the frames-major real/imaginary layout the KD losses reduce over quickly
on CPU; :func:`power` and :func:`magnitude` work on it. Used by ``spectral``, ``subband`` and DFKD
(its Frequency Adapter too), and by the training log's crossover histogram (``N_FFT``).
"""

from __future__ import annotations

import torch

from ..losses import complex_stft

N_FFT = 512  # 32 ms Hann window at 16 kHz (method.md, "Notation")
HOP = 128  # 8 ms hop

def stft(wave: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """One-sided complex STFT ``(batch, n_fft // 2 + 1, frames)`` of method.md's "Notation"
    (:func:`dfkd.losses.complex_stft`: periodic Hann, centred zero-padded frames)."""
    return complex_stft(wave, n_fft, hop)


def stft_frames(wave: torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """:func:`stft` as real ``(batch, frames, bins, 2)`` (real, imaginary), without a copy.

    torch computes the STFT frames-major, so this layout is contiguous: reductions and running
    maxima over frequency then run along contiguous memory, several times faster on CPU than over
    the middle axis of ``(batch, bins, frames)``.
    """
    return torch.view_as_real(stft(wave, n_fft, hop).transpose(1, 2))


def power(frames: torch.Tensor) -> torch.Tensor:
    """``|X|^2`` of a ``(..., 2)`` real/imaginary tensor (written out: a sum over a last axis of
    size 2 is several times slower on CPU)."""
    return frames[..., 0] * frames[..., 0] + frames[..., 1] * frames[..., 1]


def magnitude(frames: torch.Tensor) -> torch.Tensor:
    """``|X|`` of a ``(..., 2)`` real/imaginary tensor, floored at 1e-10 so that the gradient stays
    finite on silent bins (and faster than ``abs`` of a complex tensor on CPU)."""
    return power(frames).clamp_min(1e-20).sqrt()

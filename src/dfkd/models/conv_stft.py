"""Convolutional STFT / inverse STFT with fixed DFT bases (asteroid-filterbanks' ``STFTFB``).

DCCRN (Hu et al., "DCCRN: Deep Complex Convolution Recurrent Network for Phase-Aware Speech
Enhancement", Interspeech 2020, arXiv 2008.00264) masks a complex spectrogram. asteroid 0.7.0
computes it with a ``conv1d`` whose filters are windowed DFT rows, and inverts it with a
``conv_transpose1d`` of the same filters. We build the same matrix, so our spectra (and outputs)
match asteroid's, and the model exports to ONNX (no ``torch.stft``, no complex dtype).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DfkdError
from .layers import fit_length


def stft_basis(n_fft: int, win_length: int, hop_length: int) -> torch.Tensor:
    """asteroid's STFT filter matrix, shape ``(2 * (n_fft // 2 + 1), 1, win_length)``, float32.

    Rows are ``[Re bins 0..n_fft/2; Im bins 0..n_fft/2]`` of the ``n_fft``-point DFT (Im = -sin),
    restricted to the ``win_length`` columns centred in the DFT (so phases refer to a point
    ``(n_fft - win_length) // 2`` samples before the frame start), multiplied by a square-root
    periodic Hann window and divided by ``0.5 * sqrt(win_length * n_fft / hop_length)``; the DC and
    Nyquist real rows get a further ``1 / sqrt(2)``. Built in float64 with numpy's FFT, as asteroid
    does, so the float32 result is bit-identical to asteroid's buffer.

    Args:
        n_fft: DFT size (even).
        win_length: frame length in samples, ``<= n_fft``.
        hop_length: frame hop in samples.
    """
    check_stft_sizes(n_fft, win_length, hop_length)
    n_bins = n_fft // 2 + 1
    dft = np.fft.fft(np.eye(n_fft))
    dft /= 0.5 * np.sqrt(win_length * n_fft / hop_length)
    left = (n_fft - win_length) // 2
    cols = slice(left, left + win_length)
    basis = np.vstack([np.real(dft[:n_bins, cols]), np.imag(dft[:n_bins, cols])])
    basis[0, :] /= np.sqrt(2)
    basis[n_fft // 2, :] /= np.sqrt(2)  # row n_fft/2 is Re of the Nyquist bin
    return torch.from_numpy(basis * sqrt_hann(win_length)).unsqueeze(1).float()


def sqrt_hann(win_length: int) -> np.ndarray:
    """Square root of a periodic Hann window in float64, as asteroid's STFTFB builds it."""
    return np.hanning(win_length + 1)[:-1] ** 0.5


def check_stft_sizes(n_fft: int, win_length: int, hop_length: int) -> None:
    """Raise :class:`DfkdError` for STFT sizes the conv STFT cannot represent."""
    if n_fft <= 0 or n_fft % 2:
        raise DfkdError(f"STFT n_fft must be a positive even number, got {n_fft}")
    if not 0 < win_length <= n_fft:
        raise DfkdError(f"STFT win_length must be in 1..n_fft={n_fft}, got {win_length}")
    if not 0 < hop_length <= win_length:
        raise DfkdError(f"STFT hop_length must be in 1..win_length={win_length}, got {hop_length}")


class ConvSTFT(nn.Module):
    """Analysis ``(B, T) -> (B, 2, n_fft // 2, frames)`` and synthesis back, Nyquist bin dropped.

    No centring or padding: frame ``k`` covers samples ``k * hop .. k * hop + win - 1`` and
    ``floor((T - win) / hop) + 1`` frames come out. DCCRN never uses the Nyquist bin (asteroid drops
    it before the mask network and puts a zero back before synthesis), so its two rows are left out
    of both transforms here: identical results, one row less of work each way. Synthesis divides by
    nothing (asteroid does not normalise by the window overlap), so the first and last
    ``win - hop`` samples come out attenuated, as in asteroid.

    The basis is a non-persistent buffer: it follows from the three sizes, so checkpoints do not
    carry it (asteroid's 2 x 0.8 MB copies are checked and dropped by the converter).

    Args:
        n_fft: DFT size (even); ``n_fft // 2`` bins are kept.
        win_length: frame length in samples (sqrt-Hann window centred in the DFT).
        hop_length: frame hop in samples.
    """

    def __init__(self, n_fft: int = 512, win_length: int = 400, hop_length: int = 100) -> None:
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        full = stft_basis(n_fft, win_length, hop_length)
        n_bins = n_fft // 2 + 1
        keep = list(range(n_bins - 1)) + list(range(n_bins, 2 * n_bins - 1))
        self.register_buffer("basis", full[keep].contiguous(), persistent=False)

    @property
    def n_freqs(self) -> int:
        """Number of frequency bins the network sees (Nyquist dropped)."""
        return self.n_fft // 2

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` waveform -> ``(B, 2, n_freqs, frames)`` spectrum (real, imaginary part)."""
        spec = F.conv1d(wav.unsqueeze(1), self.basis, stride=self.hop_length)
        return spec.unflatten(1, (2, self.n_freqs))

    def inverse(self, spec: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(B, 2, n_freqs, frames)`` -> ``(B, T)``, zero-padded to the length of ``like``."""
        wav = F.conv_transpose1d(spec.flatten(1, 2), self.basis, stride=self.hop_length)
        return fit_length(wav.squeeze(1), like, max_shortfall=self.hop_length)

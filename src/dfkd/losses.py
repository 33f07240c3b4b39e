"""Task losses for speech enhancement.

SI-SNR: Le Roux, Wisdom, Erdogan & Hershey, "SDR – half-baked or well done?", ICASSP 2019.
"""

from __future__ import annotations

import torch

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

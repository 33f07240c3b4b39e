"""Task losses: SI-SNR, L1, multi-resolution STFT (Yamamoto et al. 2020) and their registry."""

from __future__ import annotations

import math

import pytest
import torch

from dfkd import losses
from dfkd.errors import DfkdError


def _noise(batch: int = 2, samples: int = 8000, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))


def test_si_snr_of_a_known_mixture():
    n = torch.arange(16000, dtype=torch.float64)
    clean = torch.sin(2 * math.pi * 50 * n / 16000)
    orthogonal = 0.1 * torch.cos(2 * math.pi * 50 * n / 16000)  # 1/100 of the power -> 20 dB
    assert losses.si_snr(clean + orthogonal, clean).item() == pytest.approx(20.0, abs=1e-6)
    assert losses.neg_si_snr((clean + orthogonal)[None], clean[None]).item() == pytest.approx(-20.0)


def test_l1_waveform_is_the_mean_absolute_error():
    estimate = torch.tensor([[0.0, 1.0, -1.0, 0.5]])
    target = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert losses.l1_waveform(estimate, target).item() == pytest.approx((1 + 0 + 2 + 0.5) / 4)


def test_mrstft_is_zero_for_identical_signals():
    target = _noise()
    assert losses.multi_resolution_stft(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)


def test_mrstft_of_a_doubled_signal_is_one_plus_log_two():
    # |2Y| - |Y| = |Y|: spectral convergence is exactly 1, the log distance exactly ln 2, for every
    # resolution (white noise keeps every bin above the magnitude floor).
    target = _noise(samples=16000)
    value = losses.multi_resolution_stft(2 * target, target).item()
    assert value == pytest.approx(1 + math.log(2), rel=1e-4)


def test_mrstft_single_resolution_matches_the_definition():
    target, estimate = _noise(seed=1), _noise(seed=2)
    n_fft, hop, win = 512, 50, 240
    ref = losses.stft_magnitude(target, n_fft, hop, win)
    est = losses.stft_magnitude(estimate, n_fft, hop, win)
    expected = (ref - est).norm() / ref.norm() + (ref.log() - est.log()).abs().mean()
    got = losses.multi_resolution_stft(estimate, target, resolutions=((n_fft, hop, win),))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_mrstft_gradient_is_finite_on_silence():
    estimate = torch.zeros(1, 4000, requires_grad=True)
    losses.l1_mrstft(estimate, _noise(1, 4000)).backward()
    assert torch.isfinite(estimate.grad).all()
    assert estimate.grad.abs().sum() > 0


def test_task_loss_registry():
    assert losses.make_task_loss("sisnr") is losses.neg_si_snr
    target = _noise()
    combined = losses.make_task_loss("l1+mrstft")(0.5 * target, target)
    expected = losses.l1_waveform(0.5 * target, target) + losses.multi_resolution_stft(
        0.5 * target, target
    )
    assert combined.item() == pytest.approx(expected.item())
    with pytest.raises(DfkdError, match="unknown task loss 'snr'"):
        losses.make_task_loss("snr")

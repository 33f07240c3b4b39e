"""DFKD's cosine terms per patch of bins (option ``cosine_bins``, DISPatch's DFKD baseline)."""

from __future__ import annotations

import math

import pytest
import torch

from dfkd.distill.bands import patched_band_losses
from dfkd.distill.methods import make_kd_loss
from dfkd.errors import DfkdError

from test_methods import _speechlike  # tests/distill is on sys.path (rootdir imports)


def _frames(values) -> torch.Tensor:
    v = torch.tensor(values, dtype=torch.float64)
    return torch.stack([v, torch.zeros_like(v)], dim=-1)[None, None]  # (1, 1, bins, 2)


def test_low_band_cosine_per_chunk_hand_computed():
    teacher, student = _frames([1, 1, 1, 1]), _frames([1, -1, 2, 2])
    crossover = torch.tensor([[3]])  # low band: all four bins; high (inclusive): bin 3
    # chunks of 2: bins {0, 1}: cos 0 -> 1; bins {2, 3}: cos 4 / (sqrt 2 sqrt 8) = 1 -> 0
    low, high, _ = patched_band_losses(teacher, student, crossover, True, 0.5, -60.0, 2, 1)
    assert low.item() == pytest.approx(0.5)
    # high band = bin 3 alone: cos 1, magnitude error (1 - 2)^2 = 1 -> 0.5 * 0 + 0.5 * 1
    assert high.item() == pytest.approx(0.5)
    # whole band (a height of 4): cos = 4 / (2 sqrt 10)
    low, _, _ = patched_band_losses(teacher, student, crossover, True, 0.5, -60.0, 4, 4)
    assert low.item() == pytest.approx(1 - 4 / (2 * math.sqrt(10)))


def test_silent_chunks_leave_the_frame_mean():
    teacher, student = _frames([1, 1, 0, 0]), _frames([1, -1, 2, 2])
    low, _, _ = patched_band_losses(teacher, student, torch.tensor([[3]]), True, 0.5, -60.0, 2, 1)
    assert low.item() == pytest.approx(1.0)  # the silent chunk {2, 3} would have added a 1


def test_whole_spectrum_heights_equal_the_default_dfkd():
    clean = _speechlike(2, 4000)
    teacher = clean + 0.01 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(8))
    student = 0.6 * clean + 0.03 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(9))
    whole = make_kd_loss("dfkd")(student, teacher, clean)
    patched = make_kd_loss("dfkd", cosine_bins="257/257")(student, teacher, clean)
    assert patched.loss.item() == pytest.approx(whole.loss.item(), rel=1e-5)
    finer = make_kd_loss("dfkd", cosine_bins="4/16")(student, teacher, clean)
    assert finer.loss.item() != pytest.approx(whole.loss.item(), rel=1e-3)
    assert make_kd_loss("dfkd", cosine_bins="8").options()["cosine_bins"] == "8"


def test_patched_cosines_gradcheck_float64():
    gen = torch.Generator().manual_seed(10)
    teacher = torch.randn(2, 3, 9, 2, dtype=torch.float64, generator=gen)
    student = (teacher + torch.randn(2, 3, 9, 2, dtype=torch.float64, generator=gen)).requires_grad_()
    crossover = torch.tensor([[0, 4, 8], [2, 3, 5]])
    assert torch.autograd.gradcheck(
        lambda s: sum(patched_band_losses(teacher, s, crossover, True, 0.3, -60.0, 2, 3)[:2]), (student,))


def test_bad_cosine_bins_is_a_clear_error():
    with pytest.raises(DfkdError, match="cosine_bins"):
        make_kd_loss("dfkd", cosine_bins="ten")

"""DISPatch (Kim & Choi, arXiv 2509.15922): patch numbering, knowledge-gap selection, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from dfkd.distill.dispatch import dispatch_loss
from dfkd.distill.methods import default_kd_weight, make_kd_loss
from dfkd.distill.patches import (
    PatchHeights,
    band_chunk_ids,
    dispatch_patch_ids,
    parse_patch_heights,
    segment_sums,
)
from dfkd.errors import DfkdError

from test_methods import _speechlike  # tests/distill is on sys.path (rootdir imports)


def test_patch_ids_follow_the_crossover_hand_computed():
    # 3 frames, 6 bins, heights 2 below / 3 above, width 2 frames: 3 low + 2 high slots per group
    ids, n, is_high = dispatch_patch_ids(3, 6, PatchHeights(2, 3), 2, torch.tensor([[1, 3, 0]]), 1)
    assert n == 10
    assert ids[0].tolist() == [[0, 0, 3, 3, 3, 4], [0, 0, 1, 1, 3, 3], [5, 8, 8, 8, 9, 9]]
    assert is_high.tolist() == [False] * 3 + [True] * 2 + [False] * 3 + [True] * 2


def test_uniform_patch_grid_ignores_the_crossover():
    ids, n, _ = dispatch_patch_ids(2, 5, parse_patch_heights("2"), 1, None, 2)
    assert n == 2 * 6
    assert ids[1].tolist() == [[3, 3, 4, 4, 5], [9, 9, 10, 10, 11]]


def test_band_chunk_ids_inclusive_high_band_starts_at_the_crossover():
    low, per = band_chunk_ids(torch.tensor([[2]]), 6, 2, "low")
    high, _ = band_chunk_ids(torch.tensor([[2]]), 6, 2, "high")
    assert per == 3
    assert low[0, 0].tolist() == [0, 0, 1, 3, 3, 3]  # 3: the dump slot (outside the band)
    assert high[0, 0].tolist() == [3, 3, 0, 0, 1, 1]
    high, _ = band_chunk_ids(torch.tensor([[2]]), 6, 2, "high", inclusive=False)
    assert high[0, 0].tolist() == [3, 3, 3, 0, 0, 1]


def test_segment_sums_drop_the_dump_slot():
    values = torch.arange(6.0).reshape(1, 1, 6, 1)
    ids = torch.tensor([[[0, 0, 1, 2, 2, 1]]])
    assert segment_sums(values, ids, 2)[0, :, 0].tolist() == [1.0, 2.0 + 5.0]


@pytest.mark.parametrize("spec", ["", "a/3", "0/40", "10/-1", "10/40/2"])
def test_bad_patch_heights_are_clear_errors(spec):
    with pytest.raises(DfkdError, match="patch_bins"):
        parse_patch_heights(spec)


def _real(values) -> torch.Tensor:
    """(1, 1 frame, bins, 2) spectrum of real bin values."""
    v = torch.tensor(values, dtype=torch.float64)
    return torch.stack([v, torch.zeros_like(v)], dim=-1)[None, None]


# two patches of two bins in one frame: A = bins 0, 1 (low band), B = bins 2, 3 (high band)
IDS = torch.tensor([[[0, 0, 1, 1]]])
IS_HIGH = torch.tensor([False, True])


@pytest.mark.parametrize("top_k,expected", [(0.5, 4.0), (0.6, 2.0), (1.0, 2.0)])
def test_spectral_base_keeps_the_patches_with_the_largest_gap(top_k, expected):
    clean, teacher, student = _real([1, 1, 1, 1]), _real([1, 1, 2, 2]), _real([3, 3, 2, 2])
    # gap A = mean (3-1)^2 - 0 = 4, gap B = 1 - 1 = 0; KD loss A = (3-1)^2 = 4, B = 0
    loss, parts = dispatch_loss(teacher, student, clean, IDS, 2, IS_HIGH, "spectral", top_k)
    assert loss.item() == pytest.approx(expected)
    assert parts["kept"].item() == pytest.approx(0.5 if top_k == 0.5 else 1.0)
    assert parts["gap"].item() == pytest.approx(4.0 if top_k == 0.5 else 2.0)


def test_dfkd_base_uses_the_band_loss_of_each_patch():
    clean = _real([1, 2, 1, 1])
    teacher = _real([1, 2, 1, 3])  # A exact; B: cos(Y, T) = 4 / (sqrt 2 sqrt 10), |.| errors (0, 2)
    student = _real([-1, -2, 1, 1])  # A inverted (1 - cos = 2); B equal to the clean target
    beta = 0.25
    band_b = beta * (1 - 4 / (math.sqrt(2) * math.sqrt(10))) + (1 - beta) * (0 + 4) / 2
    # gaps: A = 2 - 0, B = 0 - band_b; KD losses: A = 2 (low band: cosine only), B = band_b
    loss, _ = dispatch_loss(teacher, student, clean, IDS, 2, IS_HIGH, "dfkd", 0.5, beta)
    assert loss.item() == pytest.approx(2.0)
    loss, parts = dispatch_loss(teacher, student, clean, IDS, 2, IS_HIGH, "dfkd", 1.0, beta)
    assert loss.item() == pytest.approx((2.0 + band_b) / 2)
    assert parts["gap"].item() == pytest.approx((2.0 - band_b) / 2)


def test_silent_and_empty_patches_are_not_valid():
    clean, student = _real([1, 1, 1, 1]), _real([3, 3, 5, 5])
    teacher = _real([1, 1, 0, 0])  # patch B silent: never kept, though its gap is the largest
    ids = torch.tensor([[[0, 0, 2, 2]]])  # patch 1 has no cells
    loss, parts = dispatch_loss(teacher, student, clean, ids, 3, torch.tensor([False, True, True]),
                                "spectral", 1.0)
    assert loss.item() == pytest.approx(4.0)
    assert parts["kept"].item() == 1.0


@pytest.mark.parametrize("base", ["spectral", "dfkd"])
def test_dispatch_loss_gradcheck_float64(base):
    gen = torch.Generator().manual_seed(3)
    shape = (2, 3, 8, 2)
    teacher = torch.randn(shape, dtype=torch.float64, generator=gen)
    clean = teacher + 0.3 * torch.randn(shape, dtype=torch.float64, generator=gen)
    student = (teacher + torch.randn(shape, dtype=torch.float64, generator=gen)).requires_grad_()
    ids, n, is_high = dispatch_patch_ids(3, 8, PatchHeights(2, 3), 2, torch.tensor([[2, 3, 1], [0, 5, 4]]), 2)
    assert torch.autograd.gradcheck(
        lambda s: dispatch_loss(teacher, s, clean, ids, n, is_high, base, 0.5, 0.3)[0], (student,))


def test_dispatch_method_gradcheck_on_waveforms_float64():
    gen = torch.Generator().manual_seed(4)
    clean = _speechlike(1, 640).double()
    teacher = clean + 0.01 * torch.randn(1, 640, dtype=torch.float64, generator=gen)
    student = (clean + 0.05 * torch.randn(1, 640, dtype=torch.float64, generator=gen)).requires_grad_()
    loss = make_kd_loss("dispatch", base="dfkd", patch_frames=2)
    assert torch.autograd.gradcheck(lambda s: loss(s, teacher, clean).loss, (student,))


def test_one_cell_patches_keeping_all_equal_the_spectral_loss():
    clean = _speechlike(2, 4000)
    teacher = clean + 0.01 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(5))
    student = 0.7 * clean
    every_cell = make_kd_loss("dispatch", top_k=1.0, patch_bins="1", patch_frames=1, silence_db=-200)
    expected = make_kd_loss("spectral")(student, teacher, clean).loss
    assert every_cell(student, teacher, clean).loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_whole_band_patches_of_one_frame_halve_dfkd_with_an_exclusive_crossover():
    clean = _speechlike(2, 4000)
    teacher = clean + 0.01 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(6))
    student = 0.5 * clean + 0.02 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(7))
    patched = make_kd_loss("dispatch", base="dfkd", top_k=1.0, patch_bins="257/257", patch_frames=1,
                           silence_db=-200)
    out = make_kd_loss("dfkd", crossover="exclusive", silence_db=-200)(student, teacher, clean)
    low, high = out.parts["low"].item(), out.parts["high"].item()
    # one low and one high patch per frame, all kept: (sum low + sum high) / (2 frames) when no
    # frame has its crossover at the last bin (an empty high band)
    assert patched(student, teacher, clean).loss.item() == pytest.approx((low + high) / 2, rel=1e-4)


def test_dispatch_options_defaults_and_errors():
    loss = make_kd_loss("dispatch")
    assert loss.options()["patch_bins"] == "10/40" and loss.options()["top_k"] == 0.8
    assert loss.weight == 10.0 and default_kd_weight("dispatch", {"base": "dfkd"}) == 1.0
    assert make_kd_loss("dispatch", base="dfkd").weight == 1.0
    for bad, match in [({"base": "sisnr"}, "base"), ({"top_k": 0}, "top_k"),
                       ({"patch_frames": 0}, "patch_frames"), ({"patch_bins": "x"}, "patch_bins")]:
        with pytest.raises(DfkdError, match=match):
            make_kd_loss("dispatch", **bad)
    with pytest.raises(ValueError, match="clean"):
        loss(torch.zeros(1, 800), torch.zeros(1, 800), None)

"""Frequency adapter and KD losses (DFKD, arXiv 2502.04711; baselines of method.md)."""

from __future__ import annotations

import math

import pytest
import torch

from dfkd.distill import spectra
from dfkd.distill.adapter import FrequencyAdapter, parse_rule
from dfkd.distill.methods import (
    DEFAULT_WEIGHTS,
    KD_METHODS,
    dfkd_band_losses,
    fix_polarity,
    fix_scale,
    make_kd_loss,
)
from dfkd.errors import DfkdError

SR = 16000


def _speechlike(batch: int = 2, samples: int = 8000, seed: int = 0) -> torch.Tensor:
    """Harmonic tones plus a little noise, RMS ~0.1: non-silent in every frame and band."""
    gen = torch.Generator().manual_seed(seed)
    n = torch.arange(samples) / SR
    f0 = torch.tensor([120.0, 210.0, 160.0, 95.0])[:batch, None]
    wave = sum(torch.sin(2 * math.pi * k * f0 * n) / k for k in range(1, 8))
    return 0.05 * wave + 0.01 * torch.randn(batch, samples, generator=gen)


# ----------------------------------------------------------------------------- adapter


def test_cummax_slope_crossover_is_the_bin_before_the_jump():
    # D(f) = (F_o(f+1) - F_o(f)) / F_o(f): a rise from bin k to k+1 makes argmax D = k.
    mag = torch.full((2, 257, 3), 1.0)
    mag[0, 10:, 0] = 10.0  # jump into bin 10 -> crossover 9
    mag[0, 40:, 1] = 3.0  # a smaller relative jump elsewhere loses to the larger one:
    mag[0, 5:, 1] = 1.5
    mag[0, 50:, 1] = 30.0  # 3 -> 30 is the largest relative rise -> crossover 49
    mag[1, :, 2] = 0.0  # a flat silent frame: first of equal maxima -> bin 0
    mag[1, 4, 0] = 50.0  # a dip after a peak does not move the running maximum
    bins = FrequencyAdapter("cummax-slope").crossover_bins(mag)
    assert bins.dtype == torch.long
    assert bins.tolist() == [[9, 49, 0], [3, 0, 0]]


def test_energy_rolloff_quantile():
    mag = torch.zeros(1, 257, 2)
    mag[0, :4, 0] = 1.0  # energy 1 in bins 0..3
    mag[0, 100, 1] = 2.0
    mag[0, 200, 1] = 2.0  # half the energy at 100, half at 200
    assert FrequencyAdapter("energy-rolloff:0.5").crossover_bins(mag).tolist() == [[1, 100]]
    assert FrequencyAdapter("energy-rolloff").crossover_bins(mag).tolist() == [[3, 200]]
    assert parse_rule("energy-rolloff").value == pytest.approx(0.9)


@pytest.mark.parametrize("hz,expected", [(1000, 32), (125, 4), (0, 0), (8000, 256), (20000, 256)])
def test_fixed_rule_maps_hz_to_bins(hz, expected):
    bins = FrequencyAdapter(f"fixed:{hz}").crossover_bins(torch.rand(3, 257, 5))
    assert bins.shape == (3, 5)
    assert (bins == expected).all()


def test_band_masks_inclusive_and_exclusive():
    crossover = torch.tensor([[2]])
    low, high = FrequencyAdapter(crossover="inclusive").band_masks(crossover, 5)
    assert low[0, :, 0].tolist() == [True, True, True, False, False]
    assert high[0, :, 0].tolist() == [False, False, True, True, True]
    low, high = FrequencyAdapter(crossover="exclusive").band_masks(crossover, 5)
    assert low[0, :, 0].tolist() == [True, True, True, False, False]
    assert high[0, :, 0].tolist() == [False, False, False, True, True]


@pytest.mark.parametrize(
    "spec,match",
    [
        ("slope", "unknown adapter rule"),
        ("fixed:abc", "not a number"),
        ("fixed", "not a number"),
        ("energy-rolloff:1.5", r"\(0, 1\]"),
        ("cummax-slope:-5", ">= 0 Hz"),
        ("cummax-slope-db:0", "> 0 dB"),
        ("cummax-slope-smooth:4", "odd number"),
    ],
)
def test_bad_adapter_rules_are_clear_errors(spec, match):
    with pytest.raises(DfkdError, match=match):
        parse_rule(spec)


def test_adapter_on_a_speech_like_signal_is_low_and_gradient_free():
    wave = _speechlike(1, 16000).requires_grad_()
    mag = spectra.stft(wave).abs()
    bins = FrequencyAdapter().crossover_bins(mag)
    assert not bins.requires_grad
    # f0 = 120 Hz sits at bin ~3.8: the first strong harmonic, as method.md measured on speech
    assert 2 <= bins[:, 4:-4].median().item() <= 4


# ----------------------------------------------------------------------------- band losses


def _spec(values) -> torch.Tensor:
    """(1, bins, 1) complex spectrum from a list of bin values."""
    return torch.tensor(values, dtype=torch.complex64)[None, :, None]


def test_band_losses_hand_computed():
    split = torch.tensor([[1]])  # inclusive: low {0, 1}, high {1, 2, 3}
    teacher = _spec([1, 1j, 1, 1])
    # same low band, high band with opposite sign in bins 2, 3: cos = (1 - 1 - 1) / 3 = -1/3
    low, high, _ = dfkd_band_losses(teacher, _spec([1, 1j, -1, -1]), split, beta=0.5)
    assert low.item() == pytest.approx(0.0, abs=1e-6)
    assert high.item() == pytest.approx(0.5 * (4 / 3), abs=1e-6)
    # student (2, 2j, 0, 0): low cos 1; high cos = 2 / (sqrt3 * 2), magnitude MSE = (1 + 1 + 1) / 3
    low, high, _ = dfkd_band_losses(teacher, _spec([2, 2j, 0, 0]), split, beta=0.25)
    assert low.item() == pytest.approx(0.0, abs=1e-6)
    assert high.item() == pytest.approx(0.25 * (1 - 1 / math.sqrt(3)) + 0.75 * 1.0, abs=1e-6)
    # real/imag mismatch in the low band: Re(1 * conj(1j)) = 0 -> cos = 1/2 over bins {0, 1}
    low, _, _ = dfkd_band_losses(teacher, _spec([1, 1, 1, 1]), split)
    assert low.item() == pytest.approx(0.5, abs=1e-6)
    # exclusive: high {2, 3} only; opposite signs there: cos = -1, 1 - cos = 2
    _, high, _ = dfkd_band_losses(teacher, _spec([1, 1j, -1, -1]), split, inclusive=False, beta=1.0)
    assert high.item() == pytest.approx(2.0, abs=1e-6)


def _reference_band_losses(teacher, student, crossover, inclusive, beta, silence_db=-60.0):
    """The band losses written with explicit masks, straight from method.md (slow, obvious)."""
    low_mask, high_mask = FrequencyAdapter(
        crossover="inclusive" if inclusive else "exclusive"
    ).band_masks(crossover, teacher.shape[1])
    power = teacher.abs().pow(2)
    loudest = power.sum(1).amax(-1, keepdim=True)
    threshold = (loudest * 10 ** (silence_db / 10)).clamp_min(1e-10)

    def cos(mask):
        m = mask.float()
        dot = ((teacher * student.conj()).real * m).sum(1)
        return dot / ((power * m).sum(1).sqrt() * (student.abs().pow(2) * m).sum(1).sqrt() + 1e-8)

    def mean(values, keep):
        return values[keep].mean() if keep.any() else values.new_zeros(())

    low = mean(1 - cos(low_mask), (power * low_mask).sum(1) > threshold)
    n_high = high_mask.sum(1)
    mag = ((teacher.abs() - student.abs()).pow(2) * high_mask).sum(1) / n_high.clamp_min(1)
    high_frames = beta * (1 - cos(high_mask)) + (1 - beta) * mag
    high = mean(high_frames, ((power * high_mask).sum(1) > threshold) & (n_high > 0))
    return low, high


@pytest.mark.parametrize("inclusive", [True, False])
def test_band_losses_match_the_masked_reference(inclusive):
    gen = torch.Generator().manual_seed(0)
    shape = (3, 257, 20)
    teacher = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    teacher[0, :, :5] *= 1e-5  # some silent frames
    teacher[1, :30] *= 1e-4  # a quiet low band
    teacher[2, 60:] *= 1e-3  # a quiet high band (the difference low - total must stay accurate)
    student = teacher + 0.5 * torch.complex(torch.randn(shape, generator=gen),
                                            torch.randn(shape, generator=gen))
    crossover = torch.randint(0, 257, (3, 20), generator=gen)
    crossover[0, 0], crossover[0, 1] = 0, 256  # both ends
    low, high, _ = dfkd_band_losses(teacher, student, crossover, inclusive, beta=0.3)
    ref_low, ref_high = _reference_band_losses(teacher, student, crossover, inclusive, beta=0.3)
    assert low.item() == pytest.approx(ref_low.item(), rel=1e-5)
    assert high.item() == pytest.approx(ref_high.item(), rel=1e-5)


def test_band_loss_gradient_matches_autograd_of_the_reference():
    gen = torch.Generator().manual_seed(1)
    shape = (2, 33, 6)
    teacher = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    student0 = teacher + torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    crossover = torch.randint(0, 33, (2, 6), generator=gen)
    grads = []
    for fn in (dfkd_band_losses, _reference_band_losses):
        student = student0.clone().requires_grad_()
        low, high = fn(teacher, student, crossover, True, beta=0.3)[:2]
        (low + 2 * high).backward()
        grads.append(student.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_student_band_sums_backward_passes_gradcheck():
    from dfkd.distill.bands import _StudentBandSums

    gen = torch.Generator().manual_seed(2)
    student = torch.randn(2, 3, 9, 2, dtype=torch.float64, generator=gen).requires_grad_()
    teacher = torch.randn(2, 3, 9, 2, dtype=torch.float64, generator=gen)
    weights = (torch.rand(2, 3, 9, 2, generator=gen) > 0.5).double()
    teacher_mag = teacher.pow(2).sum(-1).sqrt()
    assert torch.autograd.gradcheck(
        lambda s: _StudentBandSums.apply(s, teacher, teacher_mag, weights), (student,)
    )


def test_silent_frames_are_left_out_of_each_band_mean():
    split = torch.tensor([[1, 1, 1]])
    teacher = torch.zeros(1, 4, 3, dtype=torch.complex64)
    student = torch.ones(1, 4, 3, dtype=torch.complex64)
    teacher[0, :, 0] = torch.tensor([1, 1, 1, 1])  # loud frame, student agrees (cos = 1)
    teacher[0, :, 1] = 1e-4  # -80 dB: silent in both bands though the student is loud
    teacher[0, :2, 2] = torch.tensor([0.0, 0.0])  # silent low band ...
    teacher[0, 2:, 2] = torch.tensor([-1.0, -1.0])  # ... loud high band, opposite to the student
    low, high, active = dfkd_band_losses(teacher, student, split, beta=1.0)
    assert low.item() == pytest.approx(0.0, abs=1e-6)  # only frame 0 counts: not 1/3 * 2 ...
    # high band: frame 0 cos 1; frame 2: (0 - 1 - 1) / (sqrt2 * sqrt3) -> mean over 2 frames
    assert high.item() == pytest.approx((1 + 2 / math.sqrt(6)) / 2, abs=1e-6)
    assert active.tolist() == [[True, False, True]]
    # a threshold below -80 dB counts the quiet frame again
    low, _, _ = dfkd_band_losses(teacher, student, split, silence_db=-100.0)
    assert low.item() > 0.0


def test_all_silent_teacher_gives_zero_and_finite_gradient():
    student = _speechlike(1).requires_grad_()
    out = make_kd_loss("dfkd")(student, torch.zeros_like(student), clean=student.detach())
    out.loss.backward()
    assert out.loss.item() == 0.0
    assert torch.isfinite(student.grad).all()
    assert out.crossover_bins.numel() == 0


# ----------------------------------------------------------------------------- KD losses


def test_output_kd_hand_computed_and_polarity():
    clean = torch.ones(1, 400)
    teacher = -0.5 * torch.ones(1, 400)  # an inverted teacher
    student = 0.5 * torch.ones(1, 400)
    assert make_kd_loss("output")(student, teacher, clean).loss.item() == pytest.approx(0.0)
    no_fix = make_kd_loss("output", polarity_fix=False)
    assert no_fix(student, teacher, clean).loss.item() == pytest.approx(1.0)
    mse = make_kd_loss("output", norm="mse", polarity_fix=False)
    assert mse(torch.zeros(1, 400), teacher).loss.item() == pytest.approx(0.25)


def test_sisnr_kd_hand_computed():
    n = torch.arange(16000) / SR
    teacher = torch.sin(2 * math.pi * 100 * n)[None].double()
    student = teacher + 0.1 * torch.cos(2 * math.pi * 100 * n)[None].double()
    assert make_kd_loss("sisnr")(student, teacher).loss.item() == pytest.approx(-20.0, abs=1e-6)


def test_spectral_kd_hand_computed():
    teacher = _speechlike()
    expected = spectra.stft(teacher).abs().pow(2).mean().item()
    spectral = make_kd_loss("spectral")
    assert spectral(torch.zeros_like(teacher), teacher).loss.item() == pytest.approx(expected, rel=1e-5)
    # |2T| - |T| = |T|: the same loss as a silent student
    assert spectral(2 * teacher, teacher).loss.item() == pytest.approx(expected, rel=1e-5)


def test_subband_kd_hand_computed():
    teacher = _speechlike()
    subband = make_kd_loss("subband", bands=4)
    silent = subband(torch.zeros_like(teacher), teacher)
    assert silent.loss.item() == pytest.approx(1.0, abs=1e-5)
    assert set(silent.parts) == {"band0", "band1", "band2", "band3"}
    # every band's relative error of a 1.5x louder student is (0.5)^2
    assert subband(1.5 * teacher, teacher).loss.item() == pytest.approx(0.25, abs=1e-5)


def test_dfkd_parts_and_crossover_bins():
    teacher = _speechlike()
    student = teacher + 0.02 * torch.randn_like(teacher)
    out = make_kd_loss("dfkd", adapter="fixed:1000")(student, teacher, clean=teacher)
    assert set(out.parts) == {"low", "high"}
    assert out.loss.item() == pytest.approx((out.parts["low"] + out.parts["high"]).item())
    assert out.parts["low"] > 0 and out.parts["high"] > 0
    assert (out.crossover_bins == 32).all()
    assert out.crossover_bins.numel() > 0


@pytest.mark.parametrize("cosine_bins", ["", "10/40"])
def test_dfkd_band_losses_are_the_parts_with_their_gradients(cosine_bins):
    # what benchmarks/kd_gradient_share.py takes apart: each band still attached to the graph,
    # summing (values and gradients) to the loss the trainer uses
    teacher = _speechlike()
    student = (teacher + 0.05 * torch.randn_like(teacher)).requires_grad_(True)
    kd = make_kd_loss("dfkd", cosine_bins=cosine_bins)
    low, high, bins = kd.band_losses(student, teacher, teacher)
    out = kd(student, teacher, clean=teacher)
    assert (low.item(), high.item()) == pytest.approx((out.parts["low"].item(), out.parts["high"].item()))
    assert torch.equal(bins, out.crossover_bins)
    g_low, = torch.autograd.grad(low, student, retain_graph=True)
    g_high, = torch.autograd.grad(high, student, retain_graph=True)
    g_total, = torch.autograd.grad(out.loss, student)
    assert g_low.norm() > 0 and g_high.norm() > 0
    # float32 sums in another order: within 1e-5 of the largest gradient entry (measured: <= 4e-7)
    torch.testing.assert_close(g_low + g_high, g_total, rtol=1e-4,
                               atol=1e-5 * float(g_total.abs().max()))


def test_dfkd_polarity_fix_makes_an_inverted_teacher_harmless():
    clean = _speechlike(seed=1)
    gen = torch.Generator().manual_seed(3)
    teacher = clean + 0.001 * torch.randn(clean.shape, generator=gen)
    student = clean + 0.002 * torch.randn(clean.shape, generator=gen)
    dfkd = make_kd_loss("dfkd")
    upright = dfkd(student, teacher, clean)
    inverted = dfkd(student, -teacher, clean)
    assert inverted.loss.item() == pytest.approx(upright.loss.item(), rel=1e-6)
    assert upright.parts["low"] < 0.1
    # without the fix the cosine terms sit near cos = -1: 1 - cos ~ 2
    unfixed = make_kd_loss("dfkd", polarity_fix=False)(student, -teacher, clean)
    assert unfixed.parts["low"].item() == pytest.approx(2.0, abs=0.1)
    assert unfixed.loss > upright.loss + 2.0


@pytest.mark.parametrize("method,options", [("dfkd", {}), ("dfkd", {"scale_fix": True}),
                                            ("output", {}), ("dispatch", {"base": "dfkd"})])
def test_polarity_to_student_leaves_an_inverted_student_alone(method, options):
    # SI-SNR, the task loss, cannot tell y from -y: 2 of the 3 study students of Conv-TasNet
    # output -y. Aligned with the clean target, a sign-sensitive KD term pulls such a student
    # towards +y with a loss near its maximum; aligned with the student, it sees no difference.
    clean = _speechlike(seed=1)
    gen = torch.Generator().manual_seed(3)
    teacher = clean + 0.001 * torch.randn(clean.shape, generator=gen)
    student = clean + 0.002 * torch.randn(clean.shape, generator=gen)
    inverted = torch.stack([-student[0], student[1]])  # utterance 0 inverted, 1 upright
    to_clean = make_kd_loss(method, polarity_to="clean", **options)
    to_student = make_kd_loss(method, **options)  # the default since the study measured both
    assert to_student.options()["polarity_to"] == "student"
    upright = to_clean(student, teacher, clean).loss.item()
    assert to_student(student, teacher, clean).loss.item() == pytest.approx(upright, rel=1e-5)
    assert to_student(inverted, teacher, clean).loss.item() == pytest.approx(upright, rel=1e-5)
    assert to_clean(inverted, teacher, clean).loss.item() > 10 * upright
    # the sign is read without gradient: the student's gradient is the upright one, mirrored
    grads = []
    for source in (student, inverted):
        leaf = source.clone().requires_grad_(True)
        to_student(leaf, teacher, clean).loss.backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1][0], -grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1])


def test_polarity_to_must_name_a_reference():
    with pytest.raises(DfkdError, match="dfkd: polarity_to must be one of clean, student, not 'teacher'"):
        make_kd_loss("dfkd", polarity_to="teacher")


def test_fix_scale_is_the_least_squares_gain_per_utterance():
    clean = _speechlike()
    # utterance 0: the teacher 20 dB too quiet; utterance 1: inverted and twice too loud
    teacher = torch.stack([0.1 * clean[0], -2.0 * clean[1]])
    assert torch.allclose(fix_scale(teacher, clean), clean, atol=1e-6)
    # by hand, with noise: g = <t, y> / <t, t>
    gen = torch.Generator().manual_seed(5)
    noisy_teacher = 0.3 * clean + 0.01 * torch.randn(clean.shape, generator=gen)
    gain = (noisy_teacher * clean).sum(-1) / noisy_teacher.pow(2).sum(-1)
    assert torch.allclose(fix_scale(noisy_teacher, clean), gain[:, None] * noisy_teacher)


@pytest.mark.parametrize("method", ["output", "spectral", "subband", "dfkd"])
def test_scale_fix_makes_the_teachers_level_irrelevant(method):
    clean = _speechlike(seed=1)
    gen = torch.Generator().manual_seed(3)
    teacher = clean + 0.01 * torch.randn(clean.shape, generator=gen)
    student = 0.5 * clean + 0.02 * torch.randn(clean.shape, generator=gen)
    fixed = make_kd_loss(method, scale_fix=True)
    assert fixed.options()["scale_fix"] is True
    at_level = fixed(student, teacher, clean).loss
    quiet = fixed(student, 0.05 * teacher, clean).loss  # the teacher 26 dB quieter
    assert quiet.item() == pytest.approx(at_level.item(), rel=1e-4)
    if method != "dfkd":  # dfkd's cosine terms are level-blind, its magnitude term is not
        plain = make_kd_loss(method)
        assert plain(student, 0.05 * teacher, clean).loss.item() != pytest.approx(
            plain(student, teacher, clean).loss.item(), rel=1e-2)


def test_scale_fix_gradient_reaches_the_student_only():
    clean = _speechlike(seed=2)
    teacher = (0.2 * clean).requires_grad_(True)
    student = (0.9 * clean).clone().requires_grad_(True)
    make_kd_loss("spectral", scale_fix=True)(student, teacher, clean).loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_fix_polarity_per_utterance():
    clean = _speechlike()
    teacher = torch.stack([clean[0], -clean[1]])
    fixed = fix_polarity(teacher, clean)
    assert torch.equal(fixed, clean)


@pytest.mark.parametrize("method", [m for m in KD_METHODS if m != "none"])
def test_gradients_reach_the_student_only(method):
    clean = _speechlike()
    teacher = (clean + 0.01 * torch.randn_like(clean)).requires_grad_()
    student = (clean + 0.05 * torch.randn_like(clean)).requires_grad_()
    out = make_kd_loss(method)(student, teacher, clean)
    out.loss.backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["output", "spectral", "subband", "dfkd"])
def test_losses_vanish_when_student_equals_teacher(method):
    teacher = _speechlike()
    assert make_kd_loss(method)(teacher.clone(), teacher, teacher).loss.item() == pytest.approx(
        0.0, abs=1e-5
    )


def test_sisnr_kd_is_minimal_when_student_equals_teacher():
    teacher = _speechlike()
    sisnr = make_kd_loss("sisnr")
    same = sisnr(teacher.clone(), teacher).loss.item()
    assert same < -60
    assert same < sisnr(teacher + 0.001 * torch.randn_like(teacher), teacher).loss.item()


def test_none_needs_no_teacher():
    kd = make_kd_loss("none")
    assert not kd.needs_teacher and kd.weight == 0.0
    assert kd(torch.ones(1, 100), None).loss.item() == 0.0


def test_registry_defaults_and_errors():
    assert make_kd_loss("dfkd").weight == DEFAULT_WEIGHTS["dfkd"] == 1.0
    assert make_kd_loss("spectral").weight == 10.0
    assert make_kd_loss("sisnr").weight == 0.1
    assert make_kd_loss("dfkd", weight=3, beta=None).beta == 0.5  # None -> default
    dfkd = make_kd_loss("dfkd", adapter="energy-rolloff:0.8", crossover="exclusive", beta=0.3)
    assert dfkd.options()["adapter"] == "energy-rolloff:0.8"
    with pytest.raises(DfkdError, match="unknown KD method 'logit'"):
        make_kd_loss("logit")
    with pytest.raises(DfkdError, match="has no option"):
        make_kd_loss("spectral", beta=0.5)
    with pytest.raises(DfkdError, match="beta must be"):
        make_kd_loss("dfkd", beta=2.0)
    with pytest.raises(DfkdError, match="crossover mode"):
        make_kd_loss("dfkd", crossover="both")
    with pytest.raises(DfkdError, match=">= 0"):
        make_kd_loss("sisnr", weight=-1)

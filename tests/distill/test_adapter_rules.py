"""The readings of DFKD's "maximum slope" beside cummax-slope (issue 11): a minimum frequency, the
slope of the dB spectrum, the slope of a smoothed spectrum."""

from __future__ import annotations

import pytest
import torch

from dfkd.distill.adapter import FrequencyAdapter, parse_rule, smoothed_magnitude


def _frame(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[None, :, None]  # (1, bins, 1 frame)


# a near-zero DC bin then a harmonic at bin 3 and a bigger rise at bin 6 (x4)
NEAR_ZERO_DC = [1e-6, 1.0, 1.0, 2.0, 2.0, 2.0, 8.0, 8.0]


def test_plain_rule_lands_on_the_near_zero_dc_bin():
    # relative rise 1e-6 -> 1 at bin 0 is ~1e6, far above 2x or 4x
    assert FrequencyAdapter("cummax-slope").crossover_bins(_frame(NEAR_ZERO_DC)).item() == 0


def test_minimum_frequency_skips_the_low_bins():
    # 100 Hz = bin 3 (of 512 at 16 kHz): searched rises start at bin 3: 2 -> 2 (0), ..., 2 -> 8 at 5
    assert FrequencyAdapter("cummax-slope:100").crossover_bins(_frame(NEAR_ZERO_DC)).item() == 5
    # 31.25 Hz = bin 1: rises 0 (1->1), 1 (1->2 at bin 2), 0, 0, 3 (2->8 at bin 5): bin 5
    assert FrequencyAdapter("cummax-slope:31.25").crossover_bins(_frame(NEAR_ZERO_DC)).item() == 5


def test_db_slope_floors_the_dc_bin():
    # floor 6 dB below the peak (8 -> 4.0): levels in dB of [4, 1, 1, 2, 2, 2, 8, 8] after the floor:
    # running max [12.04, 12.04, ..., 18.06]: the only rise is at bin 5 (+6.02 dB)
    assert FrequencyAdapter("cummax-slope-db:6").crossover_bins(_frame(NEAR_ZERO_DC)).item() == 5
    # a floor of 60 dB keeps DC at 8e-3: its rise to 1 (+42 dB) beats +12 dB at bin 5
    assert FrequencyAdapter("cummax-slope-db").crossover_bins(_frame(NEAR_ZERO_DC)).item() == 0
    assert parse_rule("cummax-slope-db").value == 60.0


def test_smoothing_is_a_centred_mean_without_padding():
    smooth = smoothed_magnitude(torch.tensor([[3.0, 0.0, 3.0, 6.0]]), 3)
    assert smooth.tolist() == [[1.5, 2.0, 3.0, 4.5]]
    frame = _frame([1e-6, 1.0, 1.0, 2.0, 2.0, 2.0, 12.0, 12.0])
    assert FrequencyAdapter("cummax-slope").crossover_bins(frame).item() == 0
    # smoothed over 3 bins: [0.5, 0.67, 1.33, 1.67, 2, 5.33, 8.67, 12]; relative rises of the
    # running max: 0.33, 1.0, 0.25, 0.2, 1.67, 0.63, 0.38 -> bin 4
    assert FrequencyAdapter("cummax-slope-smooth:3").crossover_bins(frame).item() == 4


@pytest.mark.parametrize("rule", ["cummax-slope:100", "cummax-slope-db", "cummax-slope-smooth"])
def test_new_rules_train_dfkd(rule):
    from dfkd.distill.methods import make_kd_loss

    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(2, 2000, generator=gen) * 0.1
    student = (0.5 * clean).requires_grad_()
    out = make_kd_loss("dfkd", adapter=rule)(student, clean + 0.01, clean)
    out.loss.backward()
    assert torch.isfinite(student.grad).all() and out.loss.item() > 0
    assert make_kd_loss("dfkd", adapter=rule).options()["adapter"] == str(parse_rule(rule))

"""Causal Conv-TasNet (Luo & Mesgarani 2019, Sec. III-C): cLN, past-only padding, latency."""

from __future__ import annotations

import pytest
import torch

from dfkd import models
from dfkd.errors import DfkdError
from dfkd.models.layers import CumulativeLayerNorm
from streaming_helpers import perturbed_model

CAUSAL = models.CAUSAL_PRESETS


def _randomised(preset: str, seed: int = 0) -> torch.nn.Module:
    """A model whose norms are not the identity (so that their statistics matter)."""
    return perturbed_model("convtasnet", preset, seed)


def test_cumulative_layer_norm_matches_per_frame_statistics():
    torch.manual_seed(1)
    norm = CumulativeLayerNorm(5)
    with torch.no_grad():
        norm.gamma.uniform_(0.5, 1.5)
        norm.beta.uniform_(-1, 1)
    x = torch.randn(2, 5, 9) * 3 + 1
    out = norm(x)
    for k in range(9):  # eq. 15-16: statistics over every channel of frames 0..k
        past = x[:, :, : k + 1].double()
        mean = past.mean((1, 2), keepdim=True)
        var = ((past - mean) ** 2).mean((1, 2), keepdim=True)
        want = (x[:, :, k: k + 1].double() - mean) / torch.sqrt(var + 1e-8)
        want = want * norm.gamma.double()[:, None] + norm.beta.double()[:, None]
        torch.testing.assert_close(out[:, :, k: k + 1].double(), want, atol=1e-5, rtol=1e-5)
    # one frame at a time from the running sums gives the same frames
    sums = torch.zeros(2, 2)
    for k in range(9):
        frame, sums = norm.step(x[:, :, k: k + 1], sums, torch.tensor([k + 1.0]))
        torch.testing.assert_close(frame, out[:, :, k: k + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", CAUSAL)
def test_future_samples_do_not_change_earlier_output(preset):
    model = _randomised(preset)
    window, hop = model.config["kernel_size"], model.config["stride"]
    x = torch.randn(1, 8000) * 0.3
    cut = 5000  # change every sample from here on
    changed = x.clone()
    changed[:, cut:] = torch.randn(1, 8000 - cut)
    with torch.no_grad():
        a, b = model(x), model(changed)
    # output n reads input up to floor(n / S) S + L - 1: everything before cut - L + 1 is fixed
    safe = cut - window + 1
    assert torch.equal(a[:, :safe], b[:, :safe])
    assert (a[:, cut:] - b[:, cut:]).abs().max() > 1e-3  # the change did reach the model
    assert hop == window // 2


def test_the_non_causal_model_fails_the_same_check():
    # the check above can fail: the gLN model's early output moves with the future
    model = _randomised("tiny")
    x = torch.randn(1, 8000) * 0.3
    changed = x.clone()
    changed[:, 5000:] *= 3
    with torch.no_grad():
        assert (model(x)[:, :4000] - model(changed)[:, :4000]).abs().max() > 1e-4


@pytest.mark.parametrize("preset", CAUSAL)
def test_latency_is_the_encoder_window(preset):
    model = _randomised(preset)
    window = model.config["kernel_size"]
    assert models.latency_ms("convtasnet", model.config) == pytest.approx(window / 16.0)
    # measured: output sample n (a frame start) moves with input n + L - 1, never with n + L
    n = 40 * model.config["stride"]
    x = torch.randn(1, 4000) * 0.3
    with torch.no_grad():
        base = model(x)
        for offset, moves in ((window - 1, True), (window, False)):
            nudged = x.clone()
            nudged[:, n + offset] += 1.0
            delta = (model(nudged)[:, n] - base[:, n]).abs().item()
            assert (delta > 1e-6) is moves, (offset, delta)


def test_non_causal_presets_keep_their_identity():
    for preset in models.PRESETS:
        assert "causal" not in models.build("convtasnet", preset).config
        assert models.latency_ms("convtasnet", models.preset_config("convtasnet", preset)) is None
    causal, plain = models.build("convtasnet", "tiny-causal"), models.build("convtasnet", "tiny")
    assert causal.config == dict(plain.config, causal=True)
    # same parameter names and shapes: weights move between the two strictly
    plain.load_state_dict(causal.state_dict(), strict=True)
    rebuilt = models.build_from_config("convtasnet", causal.config)
    assert rebuilt.causal and isinstance(rebuilt.masker.in_norm, CumulativeLayerNorm)


def test_non_causal_model_has_no_streaming_form():
    with pytest.raises(DfkdError, match=r"^convtasnet: only a causal model .* can stream"):
        models.streaming_step(models.build("convtasnet", "mini"))
    with pytest.raises(DfkdError, match=r"^dccrn: only a causal model .* can stream"):
        models.streaming_step(models.build("dccrn", "mini"))

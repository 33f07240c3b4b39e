"""Causal DCCRN-CL (Hu et al. 2020, the paper's causal setting): past-only time padding, latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dfkd import cli, models
from dfkd.checkpoint import load_model

from tiny_corpus import make_tiny_corpus

REPO = Path(__file__).resolve().parents[2]
CAUSAL = [p for p in models.CAUSAL_PRESETS if p in models.arch_module("dccrn").PRESETS]

pytestmark = pytest.mark.usefixtures("one_thread")


def _randomised(preset: str, seed: int = 0) -> torch.nn.Module:
    """An eval-mode model whose BatchNorms are not the identity (so that they matter)."""
    torch.manual_seed(seed)
    model = models.build("dccrn", preset).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


def _future_change(model: torch.nn.Module, cut: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.randn(1, 8000) * 0.3
    changed = x.clone()
    changed[:, cut:] = torch.randn(1, 8000 - cut)  # every sample from `cut` on
    with torch.no_grad():
        return model(x), model(changed)


def test_the_causal_presets_are_the_twins_of_tiny_and_micro():
    assert CAUSAL == ["tiny-causal", "micro-causal"]


@pytest.mark.parametrize("preset", CAUSAL)
def test_future_samples_do_not_change_earlier_output(preset):
    model = _randomised(preset)
    latency = models.arch_module("dccrn").latency_samples(model.config)
    assert latency == model.config["win_length"]
    cut = 5000
    a, b = _future_change(model, cut)
    assert torch.equal(a[:, : cut - latency], b[:, : cut - latency])  # bit-identical
    assert (a[:, cut:] - b[:, cut:]).abs().max() > 1e-3  # the change did reach the model


def test_the_non_causal_model_fails_the_same_check():
    # the check above can fail: asteroid's layout looks 5 frames (one per level) ahead
    model = _randomised("tiny")
    a, b = _future_change(model)
    assert (a[:, : 5000 - 256] - b[:, : 5000 - 256]).abs().max() > 1e-3


@pytest.mark.parametrize("preset", CAUSAL)
def test_latency_is_the_stft_window(preset):
    model = _randomised(preset)
    win, hop = model.config["win_length"], model.config["hop_length"]
    assert models.latency_ms("dccrn", model.config) == pytest.approx(win / 16.0)  # 16 ms
    # measured: output n = k hop + 1 moves with input n + win - 2 (the end of the frame that
    # starts at k hop), never with n + win - 1 or later (the sqrt-Hann window is 0 at its start)
    n = 20 * hop + 1
    x = torch.randn(1, 8000) * 0.3
    with torch.no_grad():
        base = model(x)
        for offset, moves in ((win - 2, True), (win - 1, False), (win, False)):
            nudged = x.clone()
            nudged[:, n + offset] += 1.0
            delta = (model(nudged)[:, n] - base[:, n]).abs().item()
            assert (delta > 0) is moves, (offset, delta)


def test_non_causal_presets_keep_their_identity():
    for preset in models.PRESETS:
        assert "causal" not in models.build("dccrn", preset).config
        assert models.latency_ms("dccrn", models.preset_config("dccrn", preset)) is None
    for name in ("tiny", "micro"):
        causal, plain = models.build("dccrn", name + "-causal"), models.build("dccrn", name)
        assert causal.config == dict(plain.config, causal=True)
        # the LSTM is unidirectional in both: same parameter names, shapes and count
        plain.load_state_dict(causal.state_dict(), strict=True)
        assert models.count_params(causal) == models.count_params(plain)
        assert models.build_from_config("dccrn", causal.config).causal


def test_short_and_odd_lengths_keep_their_shape():
    model = models.build("dccrn", "micro-causal").eval()
    with torch.no_grad():
        for length in (100, 256, 1000, 4001):
            assert model(torch.randn(2, length)).shape == (2, length)


def test_two_step_distill_into_micro_causal(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", train=4, valid=2)
    out = tmp_path / "run"
    code = cli.main([str(a) for a in (
        "distill", "--teacher", REPO / "pretrained" / "dccrn_small.pt", "--preset", "micro-causal",
        "--data", corpus, "--out", out, "--steps", 2, "--valid-every", 2, "--batch-size", 2,
        "--segment-seconds", 1, "--threads", 1, "--no-progress",
        "--set", "data.valid_segment_seconds=1.25", "--set", "data.pesq_clips=0")])
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert history["train"] and history["valid"]
    student = load_model(out)
    assert student.ARCH == "dccrn" and student.config == models.build("dccrn", "micro-causal").config

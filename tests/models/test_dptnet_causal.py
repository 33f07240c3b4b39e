"""Causal DPTNet: a bounded look-ahead of one chunk (cLN, masked unidirectional inter-chunk
layers, one-sided segmentation), its latency arithmetic, and the non-causal model unchanged."""

from __future__ import annotations

import pytest
import torch

from dfkd import models
from dfkd.errors import DfkdError
from dfkd.models import dptnet
from dfkd.models.complexity import count_macs, count_params
from dfkd.models.layers import CumulativeLayerNorm
from streaming_helpers import perturbed_model

CAUSAL = ("tiny-causal", "micro-causal")


def _randomised(preset: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """A model whose norms are not the identity (so that their statistics matter)."""
    return perturbed_model("dptnet", preset, seed, **overrides)


def _framing(config: dict) -> tuple[int, int, int]:
    """(block G = H S samples, encoder overhang L - S, blocks per chunk K / H)."""
    return (config["stride"] * config["hop_size"], config["kernel_size"] - config["stride"],
            config["chunk_size"] // config["hop_size"])


@pytest.mark.parametrize("preset", CAUSAL)
def test_latency_is_one_chunk_plus_the_window_overhang(preset):
    config = models.preset_config("dptnet", preset)
    k, s, window = config["chunk_size"], config["stride"], config["kernel_size"]
    assert (k, s, window) == (16, 32, 64)
    assert dptnet.latency_samples(config) == k * s + window - s == 544
    assert models.latency_ms("dptnet", config) == pytest.approx(34.0)  # <= 40 ms, as chosen
    block, lead, r = _framing(config)
    # the largest look-ahead is at the first sample of a streaming hop of the output
    worst = max(dptnet.lookahead_end(config, n) - n for n in range(3 * block))
    assert worst == dptnet.lookahead_end(config, 2 * block - lead) - (2 * block - lead)
    assert worst + 1 == dptnet.latency_samples(config)


@pytest.mark.parametrize("preset", CAUSAL)
def test_future_beyond_the_look_ahead_leaves_earlier_output_unchanged(preset):
    model = _randomised(preset)
    block, lead, r = _framing(model.config)
    x = torch.randn(1, 6000, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.no_grad():
        base = model(x)
        # a streaming hop's first output sample (the longest look-ahead), one in the middle of
        # a hop and the last before the next hop
        for n in (7 * block - lead, 7 * block - lead + 100, 8 * block - lead - 1):
            end = dptnet.lookahead_end(model.config, n)
            changed = x.clone()
            changed[:, end + 1:] = torch.randn(1, 6000 - end - 1)
            out = model(changed)
            assert torch.equal(out[:, : n + 1], base[:, : n + 1]), n
            assert (out[:, end + 1:] - base[:, end + 1:]).abs().max() > 1e-3  # it did change
            # tight: the last sample inside the look-ahead moves output n (one chunk away; an
            # untrained model's output is ~1e-3, and with no path it would be bit-identical)
            nudged = x.clone()
            nudged[:, end] += 3.0
            assert (model(nudged)[:, n] - base[:, n]).abs().item() > 1e-8, n
        # the bound is the latency: output 7 G - (L - S) moves with input latency - 1 later
        n = 7 * block - lead
        assert dptnet.lookahead_end(model.config, n) - n == dptnet.latency_samples(model.config) - 1


def test_a_shorter_input_is_the_same_stream_followed_by_silence():
    # what the streaming flush relies on: the output where the look-ahead stays inside the cut
    # does not depend on how long the input is
    model = _randomised("tiny-causal")
    x = torch.randn(1, 5000, generator=torch.Generator().manual_seed(2)) * 0.3
    with torch.no_grad():
        whole, cut = model(x), model(x[:, :3001])
    assert cut.shape == (1, 3001)
    safe = max(n for n in range(3001) if dptnet.lookahead_end(model.config, n) <= 3000) + 1
    # rounding aside (other lengths, other kernel blockings): 1e-9 on outputs of ~1e-2
    torch.testing.assert_close(cut[:, :safe], whole[:, :safe], atol=1e-8, rtol=0)
    assert (cut[:, safe:] - whole[:, safe:3001]).abs().max() > 1e-4  # beyond, silence counts
    assert cut.abs()[:, -100:].max() > 0  # every sample is enhanced, the last ones too


def test_the_non_causal_model_fails_the_same_check():
    model = _randomised("tiny")
    x = torch.randn(1, 8000, generator=torch.Generator().manual_seed(3)) * 0.3
    changed = x.clone()
    changed[:, 6000:] *= 3
    with torch.no_grad():
        assert (model(x)[:, :2000] - model(changed)[:, :2000]).abs().max() > 1e-4


def test_inter_chunk_attention_sees_the_current_and_past_chunks_only():
    model = models.build("dptnet", "mini", causal=True, bidirectional=False, past_chunks=2)
    allowed = model._inter_mask(5, torch.device("cpu")).int()
    assert allowed.tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0],
                                [0, 1, 1, 1, 0], [0, 0, 1, 1, 1]]
    unbounded = models.build("dptnet", "mini", causal=True, bidirectional=False)
    assert torch.equal(unbounded._inter_mask(4, torch.device("cpu")),
                       torch.ones(4, 4, dtype=torch.bool).tril())


def test_non_causal_presets_keep_their_identity():
    for preset in models.PRESETS:
        config = models.build("dptnet", preset).config
        assert "causal" not in config and "past_chunks" not in config
        assert models.latency_ms("dptnet", config) is None
    causal = models.build("dptnet", "tiny-causal")
    assert causal.config == dict(models.build("dptnet", "tiny").config, chunk_size=16, hop_size=8,
                                 bidirectional=False, causal=True, past_chunks=32)
    # same parameter names and shapes as the non-causal model of the same framing
    plain = models.build("dptnet", "tiny", chunk_size=16, hop_size=8, bidirectional=False)
    plain.load_state_dict(causal.state_dict(), strict=True)
    rebuilt = models.build_from_config("dptnet", causal.config)
    assert rebuilt.causal and isinstance(rebuilt.input_norm, CumulativeLayerNorm)
    assert isinstance(rebuilt.blocks[0]["inter"].ff_norm, CumulativeLayerNorm)
    assert not rebuilt.blocks[0]["inter"].lstm.bidirectional
    assert rebuilt.blocks[0]["intra"].lstm.bidirectional  # within the chunk: both ways


@pytest.mark.parametrize("preset,params,macs", [("tiny-causal", 44_513, 46_137_344),
                                                ("micro-causal", 12_529, 13_369_344)])
def test_causal_preset_sizes(preset, params, macs):
    model = models.build("dptnet", preset)
    assert count_params(model) == params
    assert count_macs(model, seconds=1.0) == macs


def test_causal_model_trains_one_step():
    torch.manual_seed(0)
    model = models.build("dptnet", "micro-causal", dropout=0.1).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    clean = torch.randn(2, 8000) * 0.1
    noisy = clean + 0.05 * torch.randn(2, 8000)
    loss = (model(noisy) - clean).pow(2).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    optimiser.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_causal_options_get_one_line_errors():
    with pytest.raises(DfkdError, match=r"^DPTNet causal=True needs bidirectional=False"):
        models.build("dptnet", "tiny", causal=True)
    with pytest.raises(DfkdError, match=r"^DPTNet past_chunks .* needs causal=True$"):
        models.build("dptnet", "tiny", past_chunks=4)
    with pytest.raises(DfkdError, match=r"^DPTNet past_chunks must be at least 1, got 0$"):
        models.build("dptnet", "tiny-causal", past_chunks=0)
    with pytest.raises(DfkdError, match=r"kernel_size \(16\) >= stride \(32\)"):
        models.build("dptnet", "tiny-causal", kernel_size=16)


def test_causal_model_exports_offline(tmp_path):
    # the whole-file graph (export-time rewrites of the intra layers; the causal inter layers
    # are left whole) matches PyTorch on two lengths
    import numpy as np

    from dfkd.deploy.export import export_onnx, onnx_forward, onnx_session

    model = _randomised("tiny-causal")
    session = onnx_session(export_onnx(model, tmp_path / "causal.onnx"))
    for length in (16000, 23457):
        noisy = torch.randn(1, length, generator=torch.Generator().manual_seed(4)) * 0.1
        with torch.no_grad():
            expected = model(noisy).numpy()
        got = onnx_forward(session, noisy.numpy())
        assert got.shape == expected.shape
        assert float(np.abs(got - expected).max()) <= 1e-5

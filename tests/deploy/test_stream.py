"""Stateful streaming (dfkd.deploy.stream): hop by hop equals the offline forward, PyTorch and
ONNX Runtime; state resets between files; bad calls get one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dfkd import models
from dfkd.deploy.stream import OnnxStep, Streamer, TorchStep, export_streaming, is_streaming_onnx
from dfkd.errors import DfkdError
from streaming_helpers import noise_signal as _signal, offline as _offline, perturbed_model


@pytest.mark.parametrize("preset,samples", [("mini-causal", 8011), ("tiny-causal", 8011),
                                            ("micro-causal", 8011), ("student-causal", 4003)])
def test_streaming_equals_offline_in_pytorch(preset, samples):
    model = _model(preset)
    signal = _signal(samples)
    out = Streamer(model).process(signal)
    assert out.shape == signal.shape
    np.testing.assert_allclose(out, _offline(model, signal), atol=1e-5, rtol=0)


def test_step_lags_the_offline_output_by_the_delay():
    model = _model("tiny-causal")
    streamer = Streamer(model)
    hop, delay = streamer.hop, streamer.delay
    assert (hop, delay) == (16, 16) and streamer.latency_ms == 2.0
    signal = _signal(60 * hop)
    outs = np.concatenate([streamer.step(signal[i: i + hop]) for i in range(0, len(signal), hop)])
    assert not outs[:delay].any()  # the first hop only fills the encoder window
    np.testing.assert_allclose(outs[delay:], _offline(model, signal)[: len(signal) - delay],
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch, preset", [("convtasnet", "mini-causal"), ("dccrn", "micro-causal")])
def test_feed_takes_any_block_sizes(arch, preset):
    model = perturbed_model(arch, preset)
    signal = _signal(5000)
    streamer = Streamer(model)
    pieces, start = [], 0
    for size in [3, 100, 1, 0, 517, 64, 2000]:
        pieces.append(streamer.feed(signal[start: start + size]))
        start += size
    pieces += [streamer.feed(signal[start:]), streamer.flush()]
    np.testing.assert_allclose(np.concatenate(pieces), _offline(model, signal), atol=1e-5, rtol=0)


def test_state_resets_between_files():
    model = _model("tiny-causal")
    first, second = _signal(4000, seed=2), _signal(3000, seed=3)
    streamer = Streamer(model)
    streamer.process(first)
    np.testing.assert_array_equal(streamer.process(second), Streamer(model).process(second))
    # without the reset the second file would carry the first one's state: it would differ
    streamer.feed(first)
    carried = np.concatenate([streamer.feed(second), streamer.flush()])[-len(second):]
    assert np.abs(carried - _offline(model, second)).max() > 1e-3


def test_onnx_streaming_graph_equals_offline(tmp_path):
    model = _model("tiny-causal")
    path = export_streaming(model, tmp_path / "stream.onnx")
    assert is_streaming_onnx(path)
    import onnx

    graph = onnx.load(str(path)).graph
    step = models.streaming_step(model)
    assert [i.name for i in graph.input] == ["hop"] + [f"state.{n}" for n in step.state_names]
    assert [o.name for o in graph.output] == ["enhanced"] + [f"next.{n}" for n in step.state_names]
    runner = OnnxStep(path, threads=1)
    assert (runner.hop, runner.delay, runner.warmup_hops, runner.latency_ms) == (16, 16, 1, 2.0)
    signal = _signal(8011)
    streamer = Streamer(runner)
    offline = _offline(model, signal)
    np.testing.assert_allclose(streamer.process(signal), offline, atol=1e-5, rtol=0)
    np.testing.assert_allclose(streamer.process(signal), offline, atol=1e-5, rtol=0)  # reset
    # the same state tensors as PyTorch's after every hop
    torch_step, state_t, state_o = TorchStep(model), None, None
    state_t, state_o = torch_step.initial_state(), runner.initial_state()
    assert [s.shape for s in state_t] == [s.shape for s in state_o]


def test_bad_calls_get_one_line_errors(tmp_path):
    streamer = Streamer(_model("mini-causal"))
    with pytest.raises(DfkdError, match=r"^Streamer.step takes exactly 8 samples, got 5$"):
        streamer.step(np.zeros(5, dtype=np.float32))
    streamer.reset()
    streamer.feed(np.zeros(10, dtype=np.float32))
    with pytest.raises(DfkdError, match=r"^a stream needs at least one encoder window \(16 samples\)"):
        streamer.flush()
    from dfkd.deploy.export import export_onnx

    plain = export_onnx(_model("mini-causal"), tmp_path / "plain.onnx")
    with pytest.raises(DfkdError, match=r"plain.onnx: not a streaming model \(write one with "
                                        r"dfkd export --streaming\)$"):
        OnnxStep(plain)
    with pytest.raises(DfkdError, match=r"^convtasnet: only a causal model"):
        Streamer(models.build("convtasnet", "mini"))


def test_causal_model_exports_offline_too(tmp_path):
    # the whole-file graph (dfkd export, export-time rewrites on 4-D tensors) matches PyTorch
    from dfkd.deploy.export import export_checked

    errors = export_checked(_model("tiny-causal"), tmp_path / "offline.onnx")
    assert max(errors.values()) < 1e-5


def _model(preset: str, seed: int = 0) -> torch.nn.Module:
    return perturbed_model("convtasnet", preset, seed)

"""Causal DCCRN-CL streamed one STFT frame at a time (dfkd.models.dccrn_stream): equal to the
offline causal forward in PyTorch and ONNX Runtime, state reset between files, latency, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfkd import models
from dfkd.deploy.stream import OnnxStep, Streamer, export_streaming
from dfkd.errors import DfkdError
from streaming_helpers import noise_signal as _signal, offline as _offline, perturbed_model

CAUSAL = ("tiny-causal", "micro-causal")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("preset", CAUSAL)
def test_streaming_equals_offline_in_pytorch(preset):
    model = _trained_looking(preset)
    streamer = Streamer(model)
    # one window exactly, a partial last hop, whole hops, 1 s with a partial hop
    for samples in (256, 300, 4096, 16001):
        signal = _signal(samples, seed=samples)
        out = streamer.process(signal)
        offline = _offline(model, signal)
        assert out.shape == signal.shape
        assert np.abs(offline).max() > 0.05  # a real output, not zeros on both sides
        np.testing.assert_allclose(out, offline, atol=1e-5, rtol=0)


def test_batchnorm_statistics_matter():
    # the same weights with identity BatchNorm stream a different output: the check above sees them
    model = _trained_looking("micro-causal")
    signal = _signal(2000)
    plain = models.build("dccrn", "micro-causal").eval()
    state = {k: v for k, v in model.state_dict().items() if "norm" not in k}
    plain.load_state_dict(state, strict=False)
    assert np.abs(Streamer(plain).process(signal) - _offline(model, signal)).max() > 1e-2


def test_framing_and_the_delay():
    model = _trained_looking("tiny-causal")
    step = models.streaming_step(model)
    win, hop = model.config["win_length"], model.config["hop_length"]
    assert (step.hop, step.delay, step.warmup_hops) == (hop, win - hop, win // hop - 1)
    assert (step.hop, step.delay, step.warmup_hops) == (128, 128, 1)
    assert step.state_names[0] == "window" and step.state_names[-1] == "istft_tail"
    # 5 encoders, 2 complex LSTM layers (h, c), 4 decoders + the output layer, kt - 1 = 1 frame each
    assert len(step.state_names) == 1 + 5 + 4 + 5 + 1
    state = step.initial_state()
    assert state[0].shape == (1, 128) and state[-1].shape == (1, 128)
    assert state[1].shape == (1, 2, 1, 128, 1)  # the STFT frame: 1 complex channel, 128 bins
    # latency = the hop being collected + the delay = the STFT window, 16 ms at 16 kHz
    streamer = Streamer(model)
    assert streamer.latency_ms == 1000.0 * (step.hop + step.delay) / 16000 == 16.0
    assert models.latency_ms("dccrn", model.config) == win / 16.0
    signal = _signal(40 * hop)
    outs = np.concatenate([streamer.step(signal[i: i + hop]) for i in range(0, len(signal), hop)])
    assert not outs[: step.delay].any()  # the first hop only fills the STFT window
    offline = _offline(model, signal)
    np.testing.assert_allclose(outs[step.delay:], offline[: len(signal) - step.delay], atol=1e-5,
                               rtol=0)


def test_state_resets_between_files():
    model = _trained_looking("tiny-causal")
    first, second = _signal(4000, seed=2), _signal(3000, seed=3)
    streamer = Streamer(model)
    streamer.process(first)
    np.testing.assert_allclose(streamer.process(second), _offline(model, second), atol=1e-5,
                               rtol=0)
    # without the reset the second file would carry the first one's state (LSTM, buffers)
    streamer.feed(first)
    carried = np.concatenate([streamer.feed(second), streamer.flush()])[-len(second):]
    assert np.abs(carried - _offline(model, second)).max() > 1e-3


@pytest.mark.parametrize("preset", CAUSAL)
def test_onnx_streaming_graph_equals_offline(preset, tmp_path):
    model = _trained_looking(preset)
    path = export_streaming(model, tmp_path / "stream.onnx")
    assert not model.training  # exporting the step leaves the shared model in eval mode
    import onnx

    graph = onnx.load(str(path)).graph
    names = models.streaming_step(model).state_names
    assert [i.name for i in graph.input] == ["hop"] + [f"state.{n}" for n in names]
    assert [o.name for o in graph.output] == ["enhanced"] + [f"next.{n}" for n in names]
    assert {"LSTM", "ConvTranspose", "BatchNormalization"} <= {n.op_type for n in graph.node}
    runner = OnnxStep(path, threads=1)
    framing = (runner.hop, runner.delay, runner.warmup_hops, runner.latency_ms)
    assert framing == (128, 128, 1, 16.0)
    streamer = Streamer(runner)
    for samples in (4001, 8192):
        signal = _signal(samples, seed=samples)
        offline = _offline(model, signal)
        np.testing.assert_allclose(streamer.process(signal), offline, atol=1e-5, rtol=0)


def test_step_stays_in_eval_mode():
    model = _trained_looking("micro-causal")
    step = models.streaming_step(model)
    step.train()  # one frame has no batch statistics: BatchNorm keeps its running ones
    assert not step.training and not model.training


def test_what_cannot_stream_gets_a_one_line_error():
    with pytest.raises(DfkdError, match=r"^dccrn: only a causal model \(preset tiny-causal or "
                                        r"micro-causal, causal=True\) can stream"):
        models.streaming_step(models.build("dccrn", "tiny"))
    with pytest.raises(DfkdError, match=r"^dccrn: streaming needs the STFT window \(256\) to be "
                                        r"a multiple of the hop \(96\)$"):
        models.streaming_step(models.build("dccrn", "micro-causal", hop_length=96))


def test_other_time_kernels_stream_too():
    # kt = 3 keeps two frames per buffer, kt = 1 none (no state for that level), in both engines
    torch.manual_seed(0)
    model = models.build("dccrn", "micro-causal",
                         kernel_size=[[5, 3], [5, 1], [5, 2], [5, 2], [3, 2]]).eval()
    step = models.streaming_step(model)
    assert "encoder1" not in step.state_names and "decoder3" not in step.state_names
    shapes = dict(zip(step.state_names, (s.shape for s in step.initial_state())))
    assert shapes["encoder0"] == (1, 2, 1, 128, 2) and shapes["output_layer"] == (1, 2, 8, 64, 2)
    signal = _signal(3001)
    np.testing.assert_allclose(Streamer(model).process(signal), _offline(model, signal),
                               atol=1e-5, rtol=0)


def _trained_looking(preset: str, seed: int = 0) -> torch.nn.Module:
    return perturbed_model("dccrn", preset, seed)

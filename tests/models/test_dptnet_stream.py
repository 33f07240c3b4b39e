"""Streaming causal DPTNet (dfkd.models.dptnet_stream): block by block equals the offline forward
in PyTorch and ONNX Runtime, with a fixed-size state and the latency of the arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dfkd import models
from dfkd.deploy.stream import OnnxStep, Streamer, TorchStep, export_streaming
from dfkd.errors import DfkdError
from dfkd.models import dptnet
from streaming_helpers import noise_signal as _signal, offline as _offline, perturbed_model


def _assert_equal_output(out: np.ndarray, offline: np.ndarray) -> None:
    assert out.shape == offline.shape
    error = float(np.abs(out - offline).max())
    # 1e-5 as asked, and small against these untrained models' ~1e-2 outputs too
    assert error <= 1e-5 and error <= 1e-4 * float(np.abs(offline).max())


@pytest.mark.parametrize("preset,samples", [("tiny-causal", 8011), ("micro-causal", 8011),
                                            ("tiny-causal", 2560), ("micro-causal", 100)])
def test_streaming_equals_offline_in_pytorch(preset, samples):
    model = _model(preset)
    signal = _signal(samples)
    _assert_equal_output(Streamer(model).process(signal), _offline(model, signal))


def test_framing_is_the_latency_arithmetic():
    model = _model("tiny-causal")
    step = models.streaming_step(model)
    config = model.config
    assert step.hop == config["stride"] * config["hop_size"] == 256  # 16 ms a call
    assert step.warmup_hops == 0 and step.drain
    # delay + hop = K S + L - S, the algorithmic latency
    assert step.delay + step.hop == dptnet.latency_samples(config) == 544
    assert Streamer(model).latency_ms == 34.0


def test_step_lags_the_offline_output_by_the_delay_and_keeps_a_fixed_state():
    model = _model("micro-causal")
    step = TorchStep(model)
    hop, delay = step.hop, step.delay
    signal = _signal(60 * hop)  # 0.96 s: more chunks than the attention looks back (32)
    state = step.initial_state()
    shapes = [s.shape for s in state]
    outs = []
    for i in range(0, len(signal), hop):
        out, state = step(signal[None, i: i + hop], state)
        outs.append(out[0])
        assert [s.shape for s in state] == shapes
    outs = np.concatenate(outs)
    assert not outs[:hop].any()  # the first call completes a block of the left pad only
    _assert_equal_output(outs[delay:], _offline(model, signal)[: len(signal) - delay])


def test_feed_takes_any_block_sizes_and_resets():
    model = _model("tiny-causal")
    signal = _signal(5000)
    streamer = Streamer(model)
    pieces = [streamer.feed(signal[a:b]) for a, b in ((0, 7), (7, 700), (700, 701), (701, 5000))]
    out = np.concatenate(pieces + [streamer.flush()])
    _assert_equal_output(out, _offline(model, signal))
    streamer.reset()
    _assert_equal_output(streamer.process(signal[:3000]), _offline(model, signal[:3000]))


def test_onnx_streaming_graph_equals_offline(tmp_path):
    model = _model("tiny-causal")
    path = export_streaming(model, tmp_path / "stream.onnx")
    runner = OnnxStep(path, threads=1)
    assert (runner.hop, runner.delay, runner.warmup_hops, runner.latency_ms, runner.drain) == (
        256, 288, 0, 34.0, True)
    signal = _signal(8011)
    offline = _offline(model, signal)
    streamer = Streamer(runner)
    _assert_equal_output(streamer.process(signal), offline)
    _assert_equal_output(streamer.process(signal), offline)  # state reset between files
    torch_step = TorchStep(model)
    assert [s.shape for s in torch_step.initial_state()] == [
        s.shape for s in runner.initial_state()]


def test_only_a_bounded_causal_model_streams():
    with pytest.raises(DfkdError, match=r"^dptnet: only a causal model .* can stream"):
        models.streaming_step(models.build("dptnet", "tiny"))
    with pytest.raises(DfkdError, match=r"^dptnet: streaming needs a bounded inter-chunk"):
        models.streaming_step(models.build("dptnet", "tiny-causal", past_chunks=None))


def test_export_streaming_and_enhance_stream_on_a_file(tmp_path, capsys):
    import soundfile as sf

    from dfkd import cli
    from dfkd.checkpoint import model_payload, save_checkpoint

    model = _model("micro-causal")
    save_checkpoint(tmp_path / "micro-causal.pt", model_payload(model))
    onnx_path = tmp_path / "stream.onnx"
    assert cli.main(["export", str(tmp_path / "micro-causal.pt"), "--onnx", str(onnx_path),
                     "--streaming"]) == 0
    assert "hop 256 samples, output 288 samples behind the input, algorithmic latency 34 ms" in (
        capsys.readouterr().out)
    signal = _signal(12345)
    sf.write(tmp_path / "in.wav", signal, 16000, subtype="FLOAT")
    assert cli.main(["enhance", str(onnx_path), str(tmp_path / "in.wav"), "--out",
                     str(tmp_path / "out.wav"), "--stream"]) == 0
    out, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == 16000
    _assert_equal_output(out, _offline(model, signal))


def _model(preset: str, seed: int = 0) -> torch.nn.Module:
    return perturbed_model("dptnet", preset, seed)

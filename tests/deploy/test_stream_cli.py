"""`dfkd export --streaming`, `dfkd enhance --stream` (file and raw pipe), `dfkd bench --stream`."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from dfkd import cli
from dfkd.checkpoint import model_payload, save_checkpoint
from dfkd.deploy.stream import Streamer
from dfkd.deploy.stream_io import load_step, stream_pipe
from dfkd.errors import DfkdError
from dfkd.models import build


@pytest.fixture(scope="module", params=[("convtasnet", "mini-causal"), ("dccrn", "micro-causal")],
                ids=lambda p: p[0])
def causal(request, tmp_path_factory):
    arch, preset = request.param
    torch.manual_seed(0)
    model = build(arch, preset).eval()
    path = tmp_path_factory.mktemp("causal") / f"{preset}.pt"
    save_checkpoint(path, model_payload(model))
    return path, model


def _offline(model, signal):
    with torch.inference_mode():
        return model(torch.from_numpy(signal)[None])[0].numpy()


def test_export_streaming_then_enhance_a_file_and_a_pipe(causal, tmp_path, capsys):
    ckpt, model = causal
    onnx_path = tmp_path / "stream.onnx"
    assert cli.main(["export", str(ckpt), "--onnx", str(onnx_path), "--streaming"]) == 0
    hop = {"convtasnet": 8, "dccrn": 128}[model.ARCH]
    assert f"streaming graph, hop {hop} samples" in capsys.readouterr().out
    signal = (np.random.default_rng(0).standard_normal(4001) * 0.2).astype(np.float32)
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, signal, 16000, subtype="FLOAT")
    for engine in (str(ckpt), str(onnx_path)):
        assert cli.main(["enhance", engine, str(src), "--out", str(dst), "--stream",
                         "--overwrite"]) == 0
        out, rate = sf.read(dst, dtype="float32")
        assert rate == 16000 and out.shape == signal.shape
        np.testing.assert_allclose(out, _offline(model, signal), atol=1e-5, rtol=0)
    # the raw pipe, int16 both ways, in blocks that do not line up with the hop
    pcm = np.round(signal * 16384).astype("<i2")
    sink = io.BytesIO()
    written = stream_pipe(Streamer(load_step(onnx_path)), io.BytesIO(pcm.tobytes()), sink, "int16")
    got = np.frombuffer(sink.getvalue(), dtype="<i2")
    assert written == len(pcm) == len(got)
    want = np.clip(np.round(_offline(model, (pcm / 32768.0).astype(np.float32)) * 32768),
                   -32768, 32767)
    assert np.abs(got - want).max() <= 1


def test_stream_errors_are_one_line(causal, tmp_path, capsys):
    ckpt, model = causal
    with pytest.raises(DfkdError, match=r"^standard input ended inside a sample \(3 stray bytes "
                                        r"of float32\)$"):
        stream_pipe(Streamer(load_step(ckpt)), io.BytesIO(b"\0" * 67), io.BytesIO())
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, model_payload(build(model.ARCH, "mini")))
    assert cli.main(["enhance", str(plain), "in.wav", "--out", "o.wav", "--stream"]) == 1
    assert f"plain.pt: {model.ARCH}: only a causal model" in capsys.readouterr().err
    assert cli.main(["enhance", str(ckpt), "-", "--out", "o.wav", "--stream"]) == 1
    assert "INPUT '-' (standard input) goes with --out -" in capsys.readouterr().err


# (hop ms, latency ms, hops in 0.25 s): Conv-TasNet L 16 / hop 8; DCCRN STFT 256 / hop 128
@pytest.mark.parametrize("arch,preset,hop_ms,latency,hops", [
    ("convtasnet", "mini-causal", 0.5, 1.0, 500), ("dccrn", "micro-causal", 8.0, 16.0, 31)])
def test_bench_stream_reports_per_hop_time_rtf_and_latency(arch, preset, hop_ms, latency, hops,
                                                           capsys, tmp_path):
    out_json = tmp_path / "b.json"
    assert cli.main(["bench", "--stream", "--arch", arch, "--presets", preset,
                     "--threads", "1", "--seconds", "0.25", "--rounds", "1",
                     "--json", str(out_json)]) == 0
    rows = json.loads(out_json.read_text())["stream"]
    assert [(r["engine"], r["threads"]) for r in rows] == [("pytorch", 1), ("onnxruntime", 1)]
    for row in rows:
        assert row["hop_ms"] == hop_ms and row["latency_ms"] == latency and row["hops"] == hops
        assert row["rtf"] == pytest.approx(row["per_hop_ms"] / hop_ms)
        assert 0 < row["per_hop_ms"] < 50
    assert f"| {arch}/{preset} | onnxruntime | 1 | {hop_ms:g} |" in capsys.readouterr().out


def test_stream_file_keeps_rate_channels_and_subtype(causal, tmp_path):
    ckpt, model = causal
    signal = (np.random.default_rng(4).standard_normal((2, 3000)) * 0.2).astype(np.float32)
    src, dst = tmp_path / "st.wav", tmp_path / "st_out.wav"
    sf.write(src, signal.T, 16000, subtype="PCM_16")
    assert cli.main(["enhance", str(ckpt), str(src), "--out", str(dst), "--stream"]) == 0
    info = sf.info(str(dst))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 2, 3000, "PCM_16")
    out, _ = sf.read(dst, dtype="float32", always_2d=True)
    read, _ = sf.read(src, dtype="float32", always_2d=True)
    for channel in range(2):  # every channel from a fresh state: its own offline output
        want = _offline(model, np.ascontiguousarray(read[:, channel]))
        assert np.abs(out[:, channel] - want).max() <= 1 / 32768 + 1e-6

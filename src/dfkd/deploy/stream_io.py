"""Streaming on files, pipes and the clock: what `dfkd enhance/export/bench --stream` run.

A causal model (a checkpoint, or a streaming ``.onnx`` from :func:`~.stream.export_streaming`)
runs hop by hop through :class:`~.stream.Streamer`. Raw pipes carry mono 16 kHz samples,
little-endian ``float32`` (default) or ``int16``, with no header, so that the enhancer can sit
between an audio source and a sink (``arecord ... | dfkd enhance m.onnx - --stream --out - | aplay``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DfkdError
from .stream import OnnxStep, Step, Streamer, TorchStep

RAW_DTYPES = {"float32": np.dtype("<f4"), "int16": np.dtype("<i2")}


def load_step(path: str | os.PathLike, threads: int | None = None) -> Step:
    """A streaming step from a causal checkpoint / run folder (PyTorch) or a streaming ``.onnx``."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise DfkdError(f"{path}: ONNX model not found")
        return OnnxStep(path, threads=threads)
    import torch

    from ..checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    try:
        return TorchStep(load_model(path))
    except DfkdError as err:
        raise DfkdError(f"{path}: {err}") from err


def stream_file(streamer: Streamer, src: str | os.PathLike, dst: str | os.PathLike) -> int:
    """Enhance one audio file hop by hop (every channel from a fresh state, resampled to the
    model's rate and back); the output keeps the input's length, rate, channels and subtype. Returns the
    number of hops run."""
    from ..audio import resample, read_audio, write_audio

    audio, rate = read_audio(src)
    model_rate = streamer.runner.sample_rate
    noisy = resample(audio, rate, model_rate) if rate != model_rate else audio
    if noisy.shape[1] < streamer.hop * (streamer.runner.warmup_hops + 1):
        raise DfkdError(f"{src}: too short to stream ({noisy.shape[1]} samples at {model_rate} Hz)")
    enhanced = np.stack([streamer.process(channel) for channel in noisy])
    if rate != model_rate:
        enhanced = resample(enhanced, model_rate, rate)[:, : audio.shape[1]]
    import soundfile as sf

    # the input's own subtype (16/24-bit PCM, float), as the chunked `dfkd enhance` keeps it
    write_audio(dst, enhanced, rate, subtype=sf.info(str(src)).subtype)
    return noisy.shape[1] // streamer.hop * noisy.shape[0]


def stream_pipe(streamer: Streamer, source: BinaryIO, sink: BinaryIO, dtype: str = "float32",
                block_hops: int = 1) -> int:
    """Raw mono samples at the model's rate from ``source`` to ``sink``, hop by hop: each block
    read is enhanced and written (and flushed) at once, ``delay`` samples behind; at the end of
    the input the rest is flushed, so the output has the input's length. Returns samples written."""
    if dtype not in RAW_DTYPES:
        raise DfkdError(f"--raw-format {dtype!r}: choose one of {', '.join(RAW_DTYPES)}")
    kind = RAW_DTYPES[dtype]
    block = streamer.hop * max(1, block_hops) * kind.itemsize
    streamer.reset()
    written, leftover = 0, b""

    def put(samples: np.ndarray) -> None:
        nonlocal written
        if kind.kind == "i":
            samples = np.clip(np.round(samples * 32768.0), -32768, 32767)
        sink.write(samples.astype(kind).tobytes())
        sink.flush()
        written += len(samples)

    while True:
        data = source.read(block)
        if not data:
            break
        data = leftover + data
        usable = len(data) // kind.itemsize * kind.itemsize
        data, leftover = data[:usable], data[usable:]
        samples = np.frombuffer(data, dtype=kind).astype(np.float32)
        if kind.kind == "i":
            samples = samples / 32768.0
        put(streamer.feed(samples))
    if leftover:
        raise DfkdError(f"standard input ended inside a sample ({len(leftover)} stray bytes of "
                        f"{dtype})")
    put(streamer.flush())
    return written


def time_stream(step: Step, seconds: float = 2.0, rounds: int = 3, seed: int = 0) -> dict:
    """Per-hop compute time of ``step`` on ``seconds`` of noise: median over ``rounds`` of the
    mean time per hop, as ms and as the real-time factor (time per hop / hop duration)."""
    signal = (np.random.default_rng(seed).standard_normal(int(seconds * step.sample_rate))
              * 0.1).astype(np.float32)
    streamer = Streamer(step)
    hops = len(signal) // step.hop
    per_hop = []
    for _ in range(max(1, rounds)):
        streamer.reset()
        start = time.perf_counter()
        for i in range(hops):
            streamer.step(signal[i * step.hop: (i + 1) * step.hop])
        per_hop.append((time.perf_counter() - start) / hops)
    seconds_per_hop = float(np.median(per_hop))
    hop_ms = 1000.0 * step.hop / step.sample_rate
    return {"hop_samples": step.hop, "hop_ms": hop_ms, "per_hop_ms": 1000.0 * seconds_per_hop,
            "rtf": 1000.0 * seconds_per_hop / hop_ms, "latency_ms": step.latency_ms,
            "hops": hops}


def stdio() -> tuple[BinaryIO, BinaryIO]:
    """The binary standard streams (for the raw pipe)."""
    return sys.stdin.buffer, sys.stdout.buffer

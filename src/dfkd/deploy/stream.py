"""Stateful streaming: one hop of samples in, the enhanced hop out, in PyTorch or ONNX Runtime.

After facebookresearch/denoiser's ``DemucsStreamer`` (Defossez et al., "Real Time Speech
Enhancement in the Waveform Domain", Interspeech 2020): a causal model keeps its state between
calls instead of seeing overlapping chunks. The model's one-hop form comes from
:func:`dfkd.models.streaming_step` (``(hop, *state) -> (enhanced hop, *state)``);
:func:`export_streaming` writes that same function as an ONNX graph whose state tensors are
explicit inputs (``hop``, ``state.<name>``) and outputs (``enhanced``, ``next.<name>``), and
:class:`OnnxStep` runs it. :class:`Streamer` drives either one.

Alignment: ``Streamer.step`` returns one hop per hop, the offline output delayed by ``delay``
samples (zeros at first); ``feed`` / ``flush`` drop that delay, so everything ``feed`` returned
followed by ``flush()`` is the offline forward of the whole input (tested to 1e-5).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..errors import DfkdError
from ..files import atomic_write
from ..models import latency_ms, streaming_step
from .export import OPSET, model_metadata, onnx_metadata, onnx_session

STREAMING_KIND = "streaming-step"  # ONNX metadata ``dfkd.kind`` of a streaming graph


class Step(Protocol):
    """A one-hop function with its framing (a :class:`TorchStep` or an :class:`OnnxStep`)."""

    hop: int
    delay: int
    warmup_hops: int
    window_index: int  # which state tensor is the input window (filled during warm-up)
    sample_rate: int
    latency_ms: float

    def initial_state(self) -> list[np.ndarray]: ...

    def __call__(self, hop: np.ndarray, state: list[np.ndarray]
                 ) -> tuple[np.ndarray, list[np.ndarray]]: ...


class TorchStep:
    """A causal model's streaming step (:func:`dfkd.models.streaming_step`) in PyTorch."""

    def __init__(self, model: nn.Module) -> None:
        self.module = streaming_step(model.eval())
        self.hop, self.delay = self.module.hop, self.module.delay
        self.warmup_hops = self.module.warmup_hops
        self.drain = bool(getattr(self.module, "drain", False))  # see Streamer.flush
        self.window_index = self.module.state_names.index("window")
        self.sample_rate = int(getattr(model, "sample_rate", 16000))
        self.latency_ms = float(latency_ms(model.ARCH, model.config, self.sample_rate))

    def initial_state(self) -> list[np.ndarray]:
        return [t.numpy() for t in self.module.initial_state()]

    def __call__(self, hop: np.ndarray, state: list[np.ndarray]
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
        with torch.inference_mode():
            out, *new = self.module(torch.from_numpy(hop), *(torch.from_numpy(s) for s in state))
        return out.numpy(), [t.numpy() for t in new]


class OnnxStep:
    """A streaming graph written by :func:`export_streaming`, run by ONNX Runtime."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.session = onnx_session(path, threads=threads)
        meta = onnx_metadata(self.session)
        if meta.get("kind") != STREAMING_KIND:
            raise DfkdError(f"{path}: not a streaming model (write one with "
                            "dfkd export --streaming)")
        frame = json.loads(meta["streaming"])
        self.hop, self.delay = int(frame["hop"]), int(frame["delay"])
        self.warmup_hops = int(frame["warmup_hops"])
        self.drain = bool(frame.get("drain", False))  # see Streamer.flush
        self.sample_rate = int(meta.get("sample_rate", 16000))
        self.latency_ms = float(frame["latency_ms"])
        self._inputs = [i.name for i in self.session.get_inputs()]
        self._state = [(i.name, i.shape) for i in self.session.get_inputs()[1:]]
        self.window_index = [name for name, _ in self._state].index("state.window")

    def initial_state(self) -> list[np.ndarray]:
        return [np.zeros(shape, dtype=np.float32) for _, shape in self._state]

    def __call__(self, hop: np.ndarray, state: list[np.ndarray]
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
        out, *new = self.session.run(None, dict(zip(self._inputs, [hop, *state])))
        return out, new


class Streamer:
    """Enhance a stream hop by hop, carrying the model's state (one channel).

    Args:
        step: a :class:`TorchStep` or :class:`OnnxStep` (or a causal ``nn.Module``, wrapped in
            a :class:`TorchStep`).

    ``step(hop)`` takes exactly ``hop`` samples and returns ``hop`` samples, the offline output
    ``delay`` samples earlier (so the first ``delay`` are zeros). ``feed(samples)`` takes any
    number of samples and returns the aligned output so far; ``flush()`` returns the rest, the
    tail of a partial hop included (zeros, as offline). ``reset()`` forgets everything, for the
    next file.
    """

    def __init__(self, step: Step | nn.Module) -> None:
        self.runner: Step = TorchStep(step) if isinstance(step, nn.Module) else step
        self.hop, self.delay = self.runner.hop, self.runner.delay
        self.latency_ms = self.runner.latency_ms
        self.reset()

    def reset(self) -> None:
        """Back to the state before the first sample."""
        self.state = self.runner.initial_state()
        self.hops_seen = 0
        self.pending = np.zeros(0, dtype=np.float32)  # input short of a whole hop
        self.to_drop = self.delay  # leading output samples that are only the delay

    def step(self, hop: np.ndarray) -> np.ndarray:
        """One hop of ``hop`` float32 samples in, one hop out (see the class doc)."""
        hop = np.ascontiguousarray(hop, dtype=np.float32).reshape(1, -1)
        if hop.shape[1] != self.hop:
            raise DfkdError(f"Streamer.step takes exactly {self.hop} samples, got {hop.shape[1]}")
        self.hops_seen += 1
        if self.hops_seen <= self.runner.warmup_hops:
            # no whole encoder window yet: only buffer it (the graph always computes a frame)
            index = self.runner.window_index
            window = np.concatenate([self.state[index], hop], axis=1)
            self.state[index] = np.ascontiguousarray(window[:, self.hop:])
            return np.zeros(self.hop, dtype=np.float32)
        out, self.state = self.runner(hop, self.state)
        return out[0]

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Any number of samples in; the output aligned with the input, as far as it is known."""
        data = np.concatenate([self.pending, np.asarray(samples, dtype=np.float32).ravel()])
        whole = len(data) // self.hop * self.hop
        self.pending = data[whole:]
        outs = [self.step(data[i: i + self.hop]) for i in range(0, whole, self.hop)]
        out = np.concatenate(outs) if outs else np.zeros(0, dtype=np.float32)
        drop = min(self.to_drop, len(out))
        self.to_drop -= drop
        return out[drop:]

    def flush(self) -> np.ndarray:
        """The rest of the output: the decoder's tail, zeros for a partial last hop (as the
        offline model, which has no frame there). Call :meth:`reset` before another stream.

        A step with ``drain`` (a look-ahead beyond its hop: causal DPTNet) instead gets silence
        until every input sample has its output, as its offline model pads the input."""
        if getattr(self.runner, "drain", False):
            needed = len(self.pending) + self.delay - self.to_drop  # input not yet answered
            outs, produced = [], 0
            while produced < needed:
                outs.append(self.feed(np.zeros(self.hop - len(self.pending), dtype=np.float32)))
                produced += len(outs[-1])
            return np.concatenate(outs)[:needed] if outs else np.zeros(0, dtype=np.float32)
        if self.hops_seen <= self.runner.warmup_hops:
            raise DfkdError(f"a stream needs at least one encoder window "
                            f"({self.hop * (self.runner.warmup_hops + 1)} samples) of input")
        tail = self.state[-1][0]  # the decoder's overlap-add tail: the last frame's end
        out = np.concatenate([tail, np.zeros(len(self.pending), dtype=np.float32)])
        drop = min(self.to_drop, len(out))
        self.to_drop -= drop
        self.pending = np.zeros(0, dtype=np.float32)
        return out[drop:]

    def process(self, signal: np.ndarray) -> np.ndarray:
        """A whole 1-D signal streamed from a fresh state: the same length back."""
        self.reset()
        out = np.concatenate([self.feed(signal), self.flush()])
        self.reset()
        return out


def export_streaming(model: nn.Module, path: str | os.PathLike,
                     metadata: dict[str, Any] | None = None) -> Path:
    """Write a causal model's streaming step as ONNX: inputs ``hop`` ``(1, S)`` and
    ``state.<name>``, outputs ``enhanced`` ``(1, S)`` and ``next.<name>`` (batch 1, fixed
    shapes). The file's metadata carries the framing (``dfkd.streaming``: hop, delay, warm-up
    hops, latency) besides the arch and config, so :class:`OnnxStep` needs no model code."""
    model = model.eval()
    # eval before export: torch.onnx.export restores the module's previous mode afterwards, and a
    # fresh step module is in training mode, which would leave the shared model training
    # (BatchNorm/dropout) for the caller
    module = streaming_step(model).eval()
    names = module.state_names
    state = module.initial_state()
    framing = {"hop": module.hop, "delay": module.delay, "warmup_hops": module.warmup_hops,
               "latency_ms": latency_ms(model.ARCH, model.config), "state": names}
    if getattr(module, "drain", False):
        framing["drain"] = True
    meta = dict(model_metadata(model, **(metadata or {})), kind=STREAMING_KIND,
                streaming=json.dumps(framing))

    def write(tmp: str) -> None:
        example = (torch.zeros(1, module.hop), *state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, tmp, dynamo=False, opset_version=OPSET,
                              input_names=["hop"] + [f"state.{n}" for n in names],
                              output_names=["enhanced"] + [f"next.{n}" for n in names],
                              do_constant_folding=True)
        import onnx

        proto = onnx.load(tmp)
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = "dfkd." + key, str(value)
        onnx.save(proto, tmp)

    atomic_write(path, write)
    return Path(path)


def is_streaming_onnx(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a streaming graph from :func:`export_streaming`."""
    return onnx_metadata(onnx_session(path)).get("kind") == STREAMING_KIND

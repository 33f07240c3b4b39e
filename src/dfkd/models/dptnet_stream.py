"""Streaming causal DPTNet: one block of ``H`` frames (``G = H S`` samples) per call.

A causal :class:`~dfkd.models.dptnet.DPTNet` (``causal=True``, a bounded ``past_chunks``) reads
its input in blocks of ``H`` encoder frames, and chunk ``j`` is blocks ``j - K/H + 1 .. j``, so
each new block of ``G`` samples completes one chunk. :class:`DPTNetStep` runs that chunk through
the dual-path layers (Chen, Mao & Liu 2020, arXiv 2007.13975) with the state the earlier calls
left: the last ``L - S`` input samples (the encoder window's overhang), the input cLN's running
sums (Luo & Mesgarani 2019), the last ``K - H`` normalised frames (the rest of the chunk), per
repeat the inter-chunk attention's keys and values of the last ``past_chunks`` chunks, its two
cLNs' running sums and its forward LSTM's ``(h, c)``, then the head outputs still waiting for
later chunks (overlap-add of ``K/H - 1`` blocks), the raw encoder frames they will mask, and the
decoder's overlap-add tail. Every state tensor starts at zero, which is exactly the offline
model's zero padding before the input; the state has a fixed size (the attention looks back a
bounded number of chunks, the same in the offline model).

Alignment: the call that receives input samples ``[m G, (m + 1) G)`` completes the mask of block
``m - K/H + 1`` and returns output samples ``[(m - K/H + 1) G - (L - S), ...)`` of ``G``, so the
output lags the input by ``delay = K S - G + L - S`` samples; with the hop being collected that
is the ``K S + L - S`` of :func:`~dfkd.models.dptnet.latency_samples` (34 ms, ``tiny-causal``).
No warm-up: the first call's window is the offline model's left pad. At the end of a stream the
look-ahead is filled with silence (``drain``: :class:`~dfkd.deploy.stream.Streamer` feeds zero
hops), which is what the offline model pads the input with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DfkdError
from .layers import overlap_add_decode


class DPTNetStep(nn.Module):
    """One streaming step of a causal :class:`~dfkd.models.dptnet.DPTNet` (its modules and weights).

    Args:
        model: a DPTNet built with ``causal=True`` and ``past_chunks`` set (every ``*-causal``
            preset).

    Attributes:
        hop: samples per call (``G = H S``).
        delay: samples by which the output stream lags the input (``K S - G + L - S``).
        warmup_hops: 0 (the initial state is the offline model's left pad).
        drain: True: the end of a stream needs the look-ahead filled with silence.
        state_names: names of the state tensors, in the order ``forward`` takes and returns them.
    """

    drain = True

    def __init__(self, model: nn.Module) -> None:  # a dptnet.DPTNet (no import: cycle)
        super().__init__()
        if not getattr(model, "causal", False):
            raise DfkdError("dptnet: only a causal model (preset *-causal, causal=True) can "
                            "stream; this one attends over the whole input (gLN, BiLSTM)")
        if model.past_chunks is None:
            raise DfkdError("dptnet: streaming needs a bounded inter-chunk attention "
                            "(past_chunks, as in the *-causal presets)")
        self.model = model.eval()
        self.frame_hop = model.stride
        self.lead = model.kernel_size - model.stride
        self.frames_per_block = model.hop_size
        self.hop = model.stride * model.hop_size
        self.blocks_per_chunk = model.blocks_per_chunk
        self.pending_frames = model.chunk_size - model.hop_size  # (K/H - 1) blocks
        self.delay = model.chunk_size * model.stride - self.hop + self.lead
        self.warmup_hops = 0
        self.state_names: list[str] = ["chunks", "window", "input_norm", "chunk_frames",
                                       "raw_frames"]
        for index in range(len(model.blocks)):
            self.state_names += [f"block{index}.{name}" for name in
                                 ("keys", "values", "attention_norm", "lstm_h", "lstm_c",
                                  "ff_norm")]
        self.state_names += ["overlap_add", "decoder_tail"]

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """The state before the first sample: all zeros (the offline model's left pad)."""
        model = self.model
        weight = model.encoder.conv.weight
        zeros = lambda *shape: torch.zeros(*shape, dtype=weight.dtype, device=weight.device)
        channels, positions = weight.shape[0], model.chunk_size
        state = [zeros(1), zeros(batch, self.lead), zeros(batch, 2),
                 zeros(batch, self.pending_frames, channels),
                 zeros(batch, channels, self.pending_frames)]
        for block in model.blocks:
            attention, lstm = block["inter"].attention, block["inter"].lstm
            cache = (batch * positions, attention.n_heads, model.past_chunks, attention.head_dim)
            state += [zeros(*cache), zeros(*cache), zeros(batch * positions, 2),
                      zeros(1, batch * positions, lstm.hidden_size),
                      zeros(1, batch * positions, lstm.hidden_size), zeros(batch * positions, 2)]
        state += [zeros(batch, self.pending_frames, channels), zeros(batch, self.lead)]
        return state

    def forward(self, hop: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``hop`` ``(batch, G)`` and the state -> the enhanced hop ``(batch, G)`` and the new
        state (the offline output ``delay`` samples earlier)."""
        model = self.model
        chunks_before, window_tail, norm_sums, chunk_frames, raw_frames = state[:5]
        chunks_seen = chunks_before + 1
        window = torch.cat([window_tail, hop], dim=1)
        frames = torch.relu(F.conv1d(window.unsqueeze(1), model.encoder.conv.weight,
                                     stride=self.frame_hop))  # (B, N, H): the newest block
        normed, norm_sums = model.input_norm.step_frames(
            frames, norm_sums, chunks_before * self.frames_per_block)
        chunk = torch.cat([chunk_frames, normed.transpose(1, 2)], dim=1)  # (B, K, N)
        new_state: list[torch.Tensor] = [chunks_seen, window[:, self.hop:], norm_sums,
                                         chunk[:, self.frames_per_block:]]
        batch, positions, channels = chunk.shape
        raw = torch.cat([raw_frames, frames], dim=2)
        new_state.append(raw[:, :, self.frames_per_block:])
        layer_states: list[torch.Tensor] = []
        for index, block in enumerate(model.blocks):
            chunk = block["intra"](chunk)
            across = chunk.reshape(batch * positions, 1, channels)
            across, updated = _inter_step(block["inter"], across, chunks_before, chunks_seen,
                                          state[5 + 6 * index: 11 + 6 * index])
            layer_states += updated
            chunk = across.reshape(batch, positions, channels)
        new_state += layer_states
        head = model._head(chunk)  # (B, K, N): part i lands on block m - K/H + 1 + i
        summed = head + F.pad(state[-2], (0, 0, 0, self.frames_per_block))
        done = summed[:, : self.frames_per_block].transpose(1, 2) / self.blocks_per_chunk
        masked = raw[:, :, : self.frames_per_block] * model._mask(done)
        decoder = model.decoder
        if decoder.kernel_divisible:
            segment = overlap_add_decode(masked, decoder.conv.weight, decoder.stride)
        else:
            segment = decoder.conv(masked).squeeze(1)
        output = segment + F.pad(state[-1], (0, self.hop))
        new_state += [summed[:, self.frames_per_block:], output[:, self.hop:]]
        return (output[:, : self.hop], *new_state)


def _inter_step(layer: nn.Module, x: torch.Tensor, chunks_before: torch.Tensor,
                chunks_seen: torch.Tensor, state: tuple[torch.Tensor, ...]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A causal inter-chunk ``DualPathLayer`` on the newest chunk: ``x`` ``(B K, 1, N)``, the
    state ``(keys, values, attention_norm sums, lstm h, lstm c, ff_norm sums)``."""
    keys, values, attention_sums, h, c, ff_sums = state
    attention = layer.attention
    rows, _, channels = x.shape
    qkv = attention.in_proj(x).reshape(rows, 1, 3, attention.n_heads, attention.head_dim)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B K, heads, 1, head_dim)
    all_keys, all_values = torch.cat([keys, k], dim=2), torch.cat([values, v], dim=2)
    past = keys.shape[2]
    scores = torch.matmul(q, all_keys.transpose(2, 3)) / math.sqrt(attention.head_dim)
    # cache slot s holds chunk m - past + s: empty (before the first chunk) while s < past - m
    slots = torch.arange(past + 1, dtype=chunks_before.dtype, device=x.device)
    empty = slots + chunks_before < past
    scores = scores.masked_fill(empty, float("-inf"))
    heads = torch.matmul(torch.softmax(scores, dim=-1), all_values)
    attended = attention.out_proj(heads.transpose(1, 2).reshape(rows, 1, channels))
    x, attention_sums = layer.attention_norm.step_last(x + attended, attention_sums, chunks_seen)
    out, (h, c) = layer.lstm(x, (h, c))
    x, ff_sums = layer.ff_norm.step_last(x + layer.linear(torch.relu(out)), ff_sums, chunks_seen)
    return x, [all_keys[:, :, 1:], all_values[:, :, 1:], attention_sums, h, c, ff_sums]

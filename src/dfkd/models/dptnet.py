"""DPTNet: the dual-path transformer network, as an enhancement model (one output source).

Chen, Mao & Liu, "Dual-Path Transformer Network: Direct Context-Aware Modeling for End-to-End
Monaural Speech Separation", Interspeech 2020 (arXiv 2007.13975). The layer layout, defaults and
state-dict content follow asteroid 0.7.0's ``DPTNet`` (``masknn.DPTransformer``): our ``paper``
preset matches it parameter for parameter, and its weights load through
:func:`state_dict_from_asteroid` and reproduce its outputs to ~5e-9 (see the fixtures' README).

Export-friendly by construction: the chunking that asteroid does with ``unfold``/``fold`` is done
here with a zero pad, a reshape into blocks of ``hop_size`` frames and a concatenation of
neighbouring blocks (and back with constant pads and a sum), so the ONNX graph has no Python branch
on the input length; attention is ``F.scaled_dot_product_attention`` on a packed projection (the
same numbers as ``nn.MultiheadAttention``), which exports to plain ONNX ops.

Presets (16 kHz; params exclude buffers; MACs for 1 s of audio from
:func:`dfkd.models.complexity.count_macs`; step = one Adam step, forward + backward, batch 8 x 2 s,
on the shared 2-core development CPU; small: 2 threads, load ~3; tiny: CPU seconds of 1 thread):

======== === ====== ====== ===== ====== ======= ========= ====== ============
preset   N   L / S  ff_hid heads K / H  repeats params    GMAC/s step (s)
======== === ====== ====== ===== ====== ======= ========= ====== ============
paper    64  16/8   128    4     100/50 6       2,798,657 12.06  --
student  32  32/16  48     4     100/50 3       238,945   0.558  --
small    64  64/32  64     4     100/50 2       387,649   0.480  0.69
tiny     32  64/32  32     4     100/50 1       53,985    0.067  0.25
mini     16  16/8   16     2     20/10  1       13,425    0.077  --
======== === ====== ====== ===== ====== ======= ========= ====== ============

paper / student: 11.7x fewer parameters, 21.6x fewer MACs; small / tiny: 7.2x fewer parameters.
student hops 1 ms (S = 16, twice paper's): half the frames, so half the LSTM steps and shorter
attention sequences, which do not shrink with the width; with paper's framing the student was only
~5x faster than paper on the 2-core CPU (README.md, "Deployment"), now ~12x.
small takes 1.0 CPU-second per step on 1 thread. On a busy machine, 2 threads slow LSTM training
down (tiny: 1-10 s per step against 0.5 s on 1 thread): each LSTM time step is a short parallel
region that waits for the other thread to be scheduled.
``paper`` is asteroid's DPTNet with ``ff_hid=128`` (the paper reports 2.69 M parameters for its
separation model); ``build("dptnet", "paper", ff_hid=256)`` is asteroid's default (8,524,865).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DfkdError
from .layers import FreeDecoder, FreeEncoder, GlobalLayerNorm, check_waveforms

ARCH = "dptnet"
ASTEROID_CLASS = "DPTNet"  # asteroid's class name in its checkpoints


def frame_grid(config: Mapping[str, Any]) -> int:
    """Period of the framing in samples: encoder stride x segment hop (see
    :func:`dfkd.models.frame_grid`)."""
    return int(config.get("stride") or 1) * int(config.get("hop_size") or 1)


class SequenceGlobalLayerNorm(GlobalLayerNorm):
    """gLN over a channel-last ``(batch, seq, channels)`` tensor: one mean/variance per sequence.

    Inside the dual-path layers asteroid applies gLN to each intra-chunk (or inter-chunk) sequence
    on its own, not to the whole 4-D tensor; same statistics and parameters as
    :class:`~dfkd.models.layers.GlobalLayerNorm` (biased variance, ``eps=1e-8``), laid out
    channel-last because the attention and LSTM work that way.

    Args:
        channels: number of channels (size of the last axis).
        eps: added to the variance.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The fused group_norm of GlobalLayerNorm on the channel-first view: a quarter of the
        # training cost of an explicit mean/var/div, transposes included.
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention, numerically ``nn.MultiheadAttention`` without masks or positions.

    A packed q/k/v projection (asteroid's ``in_proj_weight`` in q, k, v order), scaled dot-product
    attention (scale ``1/sqrt(head_dim)``) and an output projection. Written out rather than
    ``nn.MultiheadAttention`` so that training, inference and MAC counting run the same code (the
    module switches to a fused kernel in inference), and ONNX gets plain MatMul/Softmax nodes.

    Args:
        channels: model width N (query, key and value size).
        n_heads: number of heads; must divide ``channels``.
        dropout: dropout on the attention weights during training.
    """

    def __init__(self, channels: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = channels // n_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)
        # Same initialisation as nn.MultiheadAttention.
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, seq, N) -> (batch, seq, N)
        batch, seq, channels = x.shape
        qkv = self.in_proj(x).reshape(batch, seq, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, head_dim)
        heads = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        heads = heads.transpose(1, 2).reshape(batch, seq, channels)
        return self.out_proj(heads)


class DualPathLayer(nn.Module):
    """asteroid's ``ImprovedTransformedLayer``: the paper's transformer with an LSTM feed-forward.

    Post-norm: ``x = gLN(x + MHA(x))``, then ``x = gLN(x + Linear(ReLU(LSTM(x))))``, on each
    sequence of a channel-last batch; no positional encoding (the LSTM carries order).

    Args:
        channels: model width N.
        n_heads: attention heads.
        ff_hid: LSTM hidden size per direction.
        bidirectional: whether the LSTM runs both ways.
        dropout: dropout after attention, after the LSTM activation and after the linear layer.
    """

    def __init__(
        self, channels: int, n_heads: int, ff_hid: int, bidirectional: bool, dropout: float
    ) -> None:
        super().__init__()
        self.attention = SelfAttention(channels, n_heads, dropout)
        self.attention_norm = SequenceGlobalLayerNorm(channels)
        self.lstm = nn.LSTM(channels, ff_hid, batch_first=True, bidirectional=bidirectional)
        self.linear = nn.Linear(ff_hid * (2 if bidirectional else 1), channels)
        self.ff_norm = SequenceGlobalLayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, seq, N) -> same
        x = self.attention_norm(x + self.dropout(self.attention(x)))
        ff = self.linear(self.dropout(torch.relu(self.lstm(x)[0])))
        return self.ff_norm(x + self.dropout(ff))


class DPTNet(nn.Module):
    """DPTNet (Chen, Mao & Liu, Interspeech 2020, arXiv 2007.13975) for single-source enhancement.

    Free encoder + ReLU, gLN, dual-path transformer over chunks of the frame sequence, PReLU +
    1x1 projection, overlap-add, ``tanh * sigmoid`` gate, ReLU mask, free decoder. Equal to asteroid
    0.7.0's ``DPTNet(n_src=1, fb_name="free", norm_type="gLN", mask_act="relu")``.

    Args:
        n_filters: encoder/decoder filters N, which is also the transformer width.
        kernel_size: filter length L in samples; inputs must be at least this long.
        stride: hop S of the filterbank in samples.
        n_heads: attention heads (must divide ``n_filters``).
        ff_hid: hidden size of each LSTM direction in the feed-forward part.
        chunk_size: chunk length K in frames.
        hop_size: hop H between chunks in frames; must divide ``chunk_size`` (default K/2).
        n_repeats: number of intra + inter layer pairs.
        bidirectional: whether the inter-chunk LSTMs are bidirectional (intra ones always are).
        dropout: dropout rate inside the transformer layers (training only).
    """

    ARCH = ARCH
    sample_rate = 16000

    def __init__(
        self,
        *,
        n_filters: int = 64,
        kernel_size: int = 16,
        stride: int = 8,
        n_heads: int = 4,
        ff_hid: int = 128,
        chunk_size: int = 100,
        hop_size: int | None = None,
        n_repeats: int = 6,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hop_size = chunk_size // 2 if hop_size is None else hop_size
        _check_config(n_filters, n_heads, chunk_size, hop_size)
        self.config: dict[str, Any] = dict(
            n_filters=n_filters,
            kernel_size=kernel_size,
            stride=stride,
            n_heads=n_heads,
            ff_hid=ff_hid,
            chunk_size=chunk_size,
            hop_size=hop_size,
            n_repeats=n_repeats,
            bidirectional=bidirectional,
            dropout=dropout,
        )
        self.kernel_size = kernel_size
        self.chunk_size = chunk_size
        self.hop_size = hop_size
        self.blocks_per_chunk = chunk_size // hop_size

        self.encoder = FreeEncoder(n_filters, kernel_size, stride)
        self.input_norm = GlobalLayerNorm(n_filters)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    # Within-chunk sequences: the paper's intra-transformer is always bidirectional.
                    "intra": DualPathLayer(n_filters, n_heads, ff_hid, True, dropout),
                    "inter": DualPathLayer(n_filters, n_heads, ff_hid, bidirectional, dropout),
                }
            )
            for _ in range(n_repeats)
        )
        self.head_prelu = nn.PReLU()
        # A 1x1 Conv2d as in asteroid (same weight shape), applied channel-last as a linear map.
        self.head_conv = nn.Conv2d(n_filters, n_filters, 1)
        self.output_conv = nn.Conv1d(n_filters, n_filters, 1)
        self.gate_conv = nn.Conv1d(n_filters, n_filters, 1)
        self.decoder = FreeDecoder(n_filters, kernel_size, stride)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Enhance ``(batch, samples)`` -> ``(batch, samples)``.

        Samples after the last full frame never reach the network and come out as exact zeros.
        """
        check_waveforms(noisy, "DPTNet", self.kernel_size, self.encoder.conv.weight.dtype)
        frames = torch.relu(self.encoder(noisy))  # (B, N, T')
        x = self.input_norm(frames).transpose(1, 2)  # (B, T', N), channel-last from here on
        chunks = self._chunk(x)  # (B, n_chunks, K, N)
        batch, n_chunks, chunk, channels = chunks.shape
        for block in self.blocks:
            chunks = block["intra"](chunks.reshape(batch * n_chunks, chunk, channels))
            across = chunks.reshape(batch, n_chunks, chunk, channels).transpose(1, 2)
            across = block["inter"](across.reshape(batch * chunk, n_chunks, channels))
            chunks = across.reshape(batch, chunk, n_chunks, channels).transpose(1, 2)
        chunks = F.linear(
            self.head_prelu(chunks), self.head_conv.weight.flatten(1), self.head_conv.bias
        )
        # asteroid divides by K/H rather than by the per-frame overlap count (exact when H | K).
        y = self._overlap_add(chunks, x.shape[1]).transpose(1, 2) / self.blocks_per_chunk
        mask = torch.relu(torch.tanh(self.output_conv(y)) * torch.sigmoid(self.gate_conv(y)))
        return self.decoder(frames * mask, noisy)

    def _chunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T', N)`` -> ``(B, n_chunks, K, N)``, chunk j = padded frames ``[jH, jH + K)``.

        As asteroid's ``unfold`` with padding K: ``n_chunks = floor((T' + K) / H) + 1``. The
        padded sequence is cut to ``floor((T' + 2K) / H)`` blocks of H frames (the frames ``unfold``
        never reaches) and chunk j concatenates blocks ``j .. j + K/H - 1``; the slices use constant
        offsets from either end, so no length-dependent branch enters the graph.
        """
        batch, n_frames, channels = x.shape
        r, hop = self.blocks_per_chunk, self.hop_size
        padded = F.pad(x, (0, 0, self.chunk_size, self.chunk_size))
        padded = padded[:, : (n_frames + 2 * self.chunk_size) // hop * hop]
        blocks = padded.reshape(batch, -1, hop, channels)
        parts = [blocks[:, i : i - (r - 1)] if i < r - 1 else blocks[:, i:] for i in range(r)]
        return torch.cat(parts, dim=2)

    def _overlap_add(self, chunks: torch.Tensor, n_frames: int | torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_chunk`, overlaps summed: ``(B, n_chunks, K, N)`` -> ``(B, T', N)``."""
        batch, n_chunks, chunk, channels = chunks.shape
        r = self.blocks_per_chunk
        parts = chunks.reshape(batch, n_chunks, r, self.hop_size, channels)
        # Part i of chunk j lands on block j + i: shift it by i blocks with a constant pad.
        blocks = F.pad(parts[:, :, 0], (0, 0, 0, 0, 0, r - 1))
        for i in range(1, r):
            blocks = blocks + F.pad(parts[:, :, i], (0, 0, 0, 0, i, r - 1 - i))
        sequence = blocks.reshape(batch, -1, channels)
        return sequence[:, self.chunk_size : self.chunk_size + n_frames]


MODEL = DPTNet

PRESETS: dict[str, dict[str, Any]] = {
    # asteroid 0.7.0 DPTNet with ff_hid=128: 2,798,657 parameters (the paper reports 2.69 M).
    "paper": dict(n_filters=64, kernel_size=16, stride=8, n_heads=4, ff_hid=128, chunk_size=100,
                  hop_size=50, n_repeats=6),
    # Half paper's width and depth, twice its hop (per-frame costs dominate a narrow model).
    "student": dict(n_filters=32, kernel_size=32, stride=16, n_heads=4, ff_hid=48, chunk_size=100,
                    hop_size=50, n_repeats=3),
    # Demo teacher: a 2 ms hop (4x paper's) is what brings a CPU training step under 1 s.
    "small": dict(n_filters=64, kernel_size=64, stride=32, n_heads=4, ff_hid=64, chunk_size=100,
                  hop_size=50, n_repeats=2),
    "tiny": dict(n_filters=32, kernel_size=64, stride=32, n_heads=4, ff_hid=32, chunk_size=100,
                 hop_size=50, n_repeats=1),
    # Study student: 26x fewer parameters than `small` (the tiny-SE KD range, arXiv 2309.08144).
    "micro": dict(n_filters=16, kernel_size=64, stride=32, n_heads=2, ff_hid=16, chunk_size=100,
                  hop_size=50, n_repeats=1),
    "mini": dict(n_filters=16, kernel_size=16, stride=8, n_heads=2, ff_hid=16, chunk_size=20,
                 hop_size=10, n_repeats=1),
}


def _check_config(n_filters: int, n_heads: int, chunk_size: int, hop_size: int) -> None:
    if n_heads < 1 or n_filters % n_heads:
        # asteroid then inserts an extra Linear to a rounded-up width; we do not.
        raise DfkdError(f"DPTNet needs n_heads ({n_heads}) to divide n_filters ({n_filters})")
    if hop_size < 1 or chunk_size % hop_size:
        # Reshape-based chunking needs whole blocks; asteroid's K/H scaling is only exact then too.
        raise DfkdError(
            f"DPTNet needs hop_size ({hop_size}) to divide chunk_size ({chunk_size})"
        )


# asteroid model_args -> the value we require (settings we do not implement raise an error).
_ASTEROID_FIXED = {
    "n_src": 1,
    "sample_rate": 16000,
    "norm_type": "gLN",
    "ff_activation": "relu",
    "mask_act": "relu",
    "encoder_activation": "relu",
}
_ASTEROID_PASSED = (
    "n_filters", "kernel_size", "stride", "n_heads", "ff_hid", "chunk_size", "hop_size",
    "n_repeats", "bidirectional", "dropout",
)


def config_from_asteroid(model_args: dict[str, Any]) -> dict[str, Any]:
    """Our constructor kwargs from asteroid's ``DPTNet`` ``model_args``.

    Args:
        model_args: the dict asteroid stores (``get_model_args()``), e.g. a checkpoint's
            ``model_args``. Raises :class:`DfkdError` for settings we do not implement: several
            sources, another filterbank, another norm/activation, a sample rate other than 16 kHz,
            ``in_chan`` different from ``n_filters``, unknown keys.
    """
    args = dict(model_args)
    unknown = set(args) - set(_ASTEROID_FIXED) - set(_ASTEROID_PASSED) - {"fb_name", "in_chan"}
    if unknown:
        raise DfkdError(f"asteroid DPTNet option(s) not supported: {', '.join(sorted(unknown))}")
    for key, required in _ASTEROID_FIXED.items():
        if key in args and args[key] != required:
            raise DfkdError(
                f"asteroid DPTNet with {key}={args[key]!r} is not supported (only {required!r})"
            )
    fb_name = str(args.get("fb_name", "free"))
    if fb_name.lower() not in ("free", "freefb"):
        raise DfkdError(f"asteroid DPTNet with filterbank {fb_name!r} is not supported (only free)")
    in_chan = args.get("in_chan")
    if in_chan is not None and "n_filters" in args and in_chan != args["n_filters"]:
        raise DfkdError(f"asteroid DPTNet with in_chan={in_chan} != n_filters is not supported")
    config = {key: args[key] for key in _ASTEROID_PASSED if key in args}
    if "bidirectional" in config:
        config["bidirectional"] = bool(config["bidirectional"])
    return config


_LAYER_RENAMES = {
    "mha.in_proj_weight": "attention.in_proj.weight",
    "mha.in_proj_bias": "attention.in_proj.bias",
    "mha.out_proj.weight": "attention.out_proj.weight",
    "mha.out_proj.bias": "attention.out_proj.bias",
    "norm_mha.gamma": "attention_norm.gamma",
    "norm_mha.beta": "attention_norm.beta",
    "norm_ff.gamma": "ff_norm.gamma",
    "norm_ff.beta": "ff_norm.beta",
    "linear.weight": "linear.weight",
    "linear.bias": "linear.bias",
}
_TOP_RENAMES = {
    "encoder.filterbank._filters": "encoder.conv.weight",
    "decoder.filterbank._filters": "decoder.conv.weight",
    "masker.in_norm.gamma": "input_norm.gamma",
    "masker.in_norm.beta": "input_norm.beta",
    "masker.first_out.0.weight": "head_prelu.weight",
    "masker.first_out.1.weight": "head_conv.weight",
    "masker.first_out.1.bias": "head_conv.bias",
    "masker.net_out.0.weight": "output_conv.weight",
    "masker.net_out.0.bias": "output_conv.bias",
    "masker.net_gate.0.weight": "gate_conv.weight",
    "masker.net_gate.0.bias": "gate_conv.bias",
}


def _rename(key: str) -> str:
    if key in _TOP_RENAMES:
        return _TOP_RENAMES[key]
    parts = key.split(".", 4)  # masker, layers, <repeat>, <0 intra | 1 inter>, <rest>
    if len(parts) == 5 and parts[:2] == ["masker", "layers"] and parts[3] in ("0", "1"):
        repeat, which, rest = parts[2], ("intra", "inter")[int(parts[3])], parts[4]
        if rest.startswith("recurrent."):
            return f"blocks.{repeat}.{which}.lstm.{rest[len('recurrent.'):]}"
        if rest in _LAYER_RENAMES:
            return f"blocks.{repeat}.{which}.{_LAYER_RENAMES[rest]}"
    raise DfkdError(f"unexpected key {key!r} in an asteroid DPTNet state dict")


def state_dict_from_asteroid(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an asteroid ``DPTNet`` state dict to ours (tensors unchanged, same shapes).

    Args:
        state_dict: asteroid's ``model.state_dict()`` (keys like ``masker.layers.0.0.mha...``).
    """
    return {_rename(key): value for key, value in state_dict.items()}

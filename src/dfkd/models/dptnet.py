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

Causal twins (``causal=True``, see :class:`DPTNet`; inter-chunk LSTM one way, attention over the
current and 32 earlier chunks): ``tiny-causal`` 44,513 parameters, 46.1 M MAC/s; ``micro-causal``
12,529, 13.4 M MAC/s; both K / H = 16 / 8, algorithmic latency K S + L - S = 544 samples = 34 ms
(:func:`latency_samples`); they stream one 16 ms block a call (:mod:`.dptnet_stream`).

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
from .layers import (CumulativeLayerNorm, FreeDecoder, FreeEncoder, GlobalLayerNorm,
                     check_waveforms)

ARCH = "dptnet"
ASTEROID_CLASS = "DPTNet"  # asteroid's class name in its checkpoints


def frame_grid(config: Mapping[str, Any]) -> int:
    """Period of the framing in samples: encoder stride x segment hop (see
    :func:`dfkd.models.frame_grid`)."""
    return int(config.get("stride") or 1) * int(config.get("hop_size") or 1)


def latency_samples(config: Mapping[str, Any]) -> int | None:
    """Algorithmic latency of a causal model in samples, ``K S + L - S``; ``None`` if non-causal.

    The input is read in blocks of ``H`` frames (``G = H S`` samples, the streaming hop), and the
    left pad of ``L - S`` samples makes block ``b`` end exactly at input sample ``(b + 1) G``.
    Chunk ``j`` is blocks ``j - K/H + 1 .. j``; a block's mask is complete once the last chunk
    holding it (``K/H - 1`` blocks later, intra-chunk attention and BiLSTM read the whole chunk)
    is in, and the decoder's window reaches ``L - S`` samples into the next block. So output
    sample ``n`` reads input up to ``(floor((n + L - S) / G) + K/H) G - 1``: at most
    ``K S + L - S - 1`` samples after it (for ``n = c G - (L - S)``), i.e. it can leave once
    ``K S + L - S`` samples (itself included) have arrived. ``tiny-causal``: 16 x 32 + 32 = 544
    samples, 34 ms. Independent of ``H`` and of how far the inter-chunk attention looks back.
    """
    if not config.get("causal"):
        return None
    stride, window = int(config["stride"]), int(config["kernel_size"])
    return int(config["chunk_size"]) * stride + window - stride


def lookahead_end(config: Mapping[str, Any], sample: int) -> int:
    """The last input sample that output ``sample`` of a causal model reads (see
    :func:`latency_samples`); the tests perturb the input just after it."""
    stride, window = int(config["stride"]), int(config["kernel_size"])
    block = stride * int(config["hop_size"])
    blocks_per_chunk = int(config["chunk_size"]) // int(config["hop_size"])
    return ((sample + window - stride) // block + blocks_per_chunk) * block - 1


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


class SequenceCumulativeLayerNorm(CumulativeLayerNorm):
    """cLN (Luo & Mesgarani 2019, eqs. 14-16) over a channel-last ``(batch, seq, channels)``
    tensor: step ``k`` of each sequence normalised with the statistics of its steps ``0..k``.

    The causal inter-chunk layers use it in place of gLN (same ``gamma`` / ``beta``), so chunk
    ``j`` is normalised from chunks ``<= j`` only; :meth:`step_last` runs one new step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)

    def step_last(self, x: torch.Tensor, sums: torch.Tensor, steps: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step ``x`` ``(batch, 1, channels)``, the running ``sums`` ``(batch, 2)`` and the
        number of steps seen with this one (``steps``): the normalised step and new sums."""
        normed, sums = self.step(x.transpose(1, 2), sums, steps)
        return normed.transpose(1, 2), sums


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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, seq, N)`` -> the same; ``mask`` ``(seq, seq)``, True where query ``i`` may
        attend to key ``j`` (the causal inter-chunk layers), ``None`` for full attention."""
        batch, seq, channels = x.shape
        qkv = self.in_proj(x).reshape(batch, seq, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, head_dim)
        heads = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
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
        causal: cLN instead of gLN (step ``k`` of a sequence reads steps ``<= k`` only; the
            caller passes the causal attention mask and a unidirectional LSTM). Same parameters.
    """

    def __init__(
        self, channels: int, n_heads: int, ff_hid: int, bidirectional: bool, dropout: float,
        causal: bool = False,
    ) -> None:
        super().__init__()
        norm = SequenceCumulativeLayerNorm if causal else SequenceGlobalLayerNorm
        self.causal = causal
        self.attention = SelfAttention(channels, n_heads, dropout)
        self.attention_norm = norm(channels)
        self.lstm = nn.LSTM(channels, ff_hid, batch_first=True, bidirectional=bidirectional)
        self.linear = nn.Linear(ff_hid * (2 if bidirectional else 1), channels)
        self.ff_norm = norm(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, seq, N)`` -> the same; ``mask``: see :meth:`SelfAttention.forward`."""
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
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
        causal: a streaming form with a bounded look-ahead of one chunk (not in the paper, whose
            model is non-causal; needs ``bidirectional=False``). The input norm and the
            inter-chunk norms are cLN (Luo & Mesgarani 2019), the inter-chunk attention is
            masked to the current and earlier chunks and its LSTM runs forward only; the
            intra-chunk layers stay as they are (full attention, BiLSTM, gLN), all inside the
            current chunk. The segmentation is one-sided: chunk ``j`` ends with frame block
            ``j`` (``H`` frames), the input gets ``L - S`` zero samples before it (block ``b``
            then ends at input sample ``(b + 1) H S``) and zeros after it up to the last block
            any output sample reads, and every output sample is produced (no zero tail). Output
            sample ``n`` then reads input up to ``K S + L - S - 1`` samples later at most
            (:func:`latency_samples`; 34 ms for ``tiny-causal``). Stored in ``config`` only
            when true, so a non-causal model's identity is unchanged.
        past_chunks: causal only: how many earlier chunks the inter-chunk attention sees besides
            the current one (``None``: all of them). A bound keeps the streaming state fixed
            (:mod:`dfkd.models.dptnet_stream` caches that many keys and values); the LSTM still
            carries everything before. Stored in ``config`` only when set.
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
        causal: bool = False,
        past_chunks: int | None = None,
    ) -> None:
        super().__init__()
        hop_size = chunk_size // 2 if hop_size is None else hop_size
        _check_config(n_filters, n_heads, chunk_size, hop_size)
        _check_causal(causal, bidirectional, past_chunks, kernel_size, stride)
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
        if causal:
            self.config["causal"] = True
        if past_chunks is not None:
            self.config["past_chunks"] = past_chunks
        self.causal = bool(causal)
        self.past_chunks = past_chunks
        self.stride = stride
        self.kernel_size = kernel_size
        self.chunk_size = chunk_size
        self.hop_size = hop_size
        self.blocks_per_chunk = chunk_size // hop_size

        self.encoder = FreeEncoder(n_filters, kernel_size, stride)
        # causal: cLN (each frame from the frames before it); the same gamma / beta
        self.input_norm = (CumulativeLayerNorm if causal else GlobalLayerNorm)(n_filters)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    # Within-chunk sequences: the paper's intra-transformer is always bidirectional
                    # (also when causal: the chunk is the look-ahead, so its gLN may read all of it).
                    "intra": DualPathLayer(n_filters, n_heads, ff_hid, True, dropout),
                    "inter": DualPathLayer(n_filters, n_heads, ff_hid, bidirectional, dropout,
                                           causal),
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

        Non-causal: samples after the last full frame never reach the network and come out as
        exact zeros. Causal: every sample is enhanced (see the class doc).
        """
        if self.causal:
            return self._forward_causal(noisy)
        check_waveforms(noisy, "DPTNet", self.kernel_size, self.encoder.conv.weight.dtype)
        frames = torch.relu(self.encoder(noisy))  # (B, N, T')
        x = self.input_norm(frames).transpose(1, 2)  # (B, T', N), channel-last from here on
        chunks = self._head(self._dual_path(self._chunk(x)))  # (B, n_chunks, K, N)
        # asteroid divides by K/H rather than by the per-frame overlap count (exact when H | K).
        y = self._overlap_add(chunks, x.shape[1]).transpose(1, 2) / self.blocks_per_chunk
        return self.decoder(frames * self._mask(y), noisy)

    def _forward_causal(self, noisy: torch.Tensor) -> torch.Tensor:
        """The causal forward: one-sided segmentation, masked inter-chunk attention."""
        check_waveforms(noisy, "DPTNet", 1, self.encoder.conv.weight.dtype)
        lead = self.kernel_size - self.stride  # so that frame f ends at input sample (f + 1) S
        block = self.stride * self.hop_size
        n_samples = noisy.shape[-1]
        # whole blocks up to the last one that output sample n_samples - 1 reads; a constant pad
        # and a slice (no branch on the length in the graph), as in _chunk
        n_blocks = (n_samples - 1 + lead) // block + self.blocks_per_chunk
        padded = F.pad(noisy, (lead, self.blocks_per_chunk * block + lead))
        padded = padded[:, : lead + n_blocks * block]
        frames = torch.relu(self.encoder(padded))  # (B, N, n_blocks H)
        x = self.input_norm(frames).transpose(1, 2)
        # chunk j = blocks j - K/H + 1 .. j: K - H zero frames before the first block
        chunks = self._chunk(x, self.chunk_size - self.hop_size, 0)
        chunks = self._head(self._dual_path(chunks, self._inter_mask(chunks.shape[1], x.device)))
        # every kept frame lies in K/H chunks; the last blocks' lie in fewer, but the output
        # samples they complete are beyond the input and cut off below
        y = self._sum_overlaps(chunks)[:, self.chunk_size - self.hop_size:]
        y = y.transpose(1, 2) / self.blocks_per_chunk
        enhanced = self.decoder(frames * self._mask(y), padded)
        return enhanced[:, lead: lead + n_samples]

    def _inter_mask(self, n_chunks: int | torch.Tensor, device: torch.device) -> torch.Tensor:
        """``(n_chunks, n_chunks)``: chunk ``i`` attends to chunks ``i - past_chunks .. i``."""
        index = torch.arange(n_chunks, device=device)
        lag = index[:, None] - index[None, :]
        allowed = lag >= 0
        if self.past_chunks is not None:
            allowed = allowed & (lag <= self.past_chunks)
        return allowed

    def _dual_path(self, chunks: torch.Tensor, inter_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
        """The intra- and inter-chunk layers on ``(B, n_chunks, K, N)`` -> the same shape."""
        batch, n_chunks, chunk, channels = chunks.shape
        for block in self.blocks:
            chunks = block["intra"](chunks.reshape(batch * n_chunks, chunk, channels))
            across = chunks.reshape(batch, n_chunks, chunk, channels).transpose(1, 2)
            across = across.reshape(batch * chunk, n_chunks, channels)
            # the mask only when there is one: the export-time rewrite of the non-causal layer
            # (dfkd.deploy.rewrite) takes the sequence alone
            across = (block["inter"](across) if inter_mask is None
                      else block["inter"](across, inter_mask))
            chunks = across.reshape(batch, chunk, n_chunks, channels).transpose(1, 2)
        return chunks

    def _head(self, chunks: torch.Tensor) -> torch.Tensor:
        """PReLU + the 1x1 projection, channel-last."""
        return F.linear(
            self.head_prelu(chunks), self.head_conv.weight.flatten(1), self.head_conv.bias
        )

    def _mask(self, y: torch.Tensor) -> torch.Tensor:
        """The ReLU mask ``(B, N, frames)`` from the overlap-added ``y`` (same shape)."""
        return torch.relu(torch.tanh(self.output_conv(y)) * torch.sigmoid(self.gate_conv(y)))

    def _chunk(self, x: torch.Tensor, before: int | None = None, after: int | None = None
               ) -> torch.Tensor:
        """``(B, T', N)`` -> ``(B, n_chunks, K, N)``, chunk j = padded frames ``[jH, jH + K)``.

        As asteroid's ``unfold`` with padding K: ``n_chunks = floor((T' + K) / H) + 1``. The
        padded sequence is cut to ``floor((T' + 2K) / H)`` blocks of H frames (the frames ``unfold``
        never reaches) and chunk j concatenates blocks ``j .. j + K/H - 1``; the slices use constant
        offsets from either end, so no length-dependent branch enters the graph. ``before`` /
        ``after``: other zero pads in frames (the causal model: ``K - H`` and 0, on whole blocks).
        """
        batch, n_frames, channels = x.shape
        r, hop = self.blocks_per_chunk, self.hop_size
        before = self.chunk_size if before is None else before
        after = self.chunk_size if after is None else after
        padded = F.pad(x, (0, 0, before, after))
        padded = padded[:, : (n_frames + before + after) // hop * hop]
        blocks = padded.reshape(batch, -1, hop, channels)
        parts = [blocks[:, i : i - (r - 1)] if i < r - 1 else blocks[:, i:] for i in range(r)]
        return torch.cat(parts, dim=2)

    def _overlap_add(self, chunks: torch.Tensor, n_frames: int | torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_chunk`, overlaps summed: ``(B, n_chunks, K, N)`` -> ``(B, T', N)``."""
        sequence = self._sum_overlaps(chunks)
        return sequence[:, self.chunk_size : self.chunk_size + n_frames]

    def _sum_overlaps(self, chunks: torch.Tensor) -> torch.Tensor:
        """``(B, n_chunks, K, N)`` -> the padded frame sequence ``(B, (n_chunks + K/H - 1) H, N)``
        with the chunks' overlaps summed (chunk j starts at frame ``j H``)."""
        batch, n_chunks, chunk, channels = chunks.shape
        r = self.blocks_per_chunk
        parts = chunks.reshape(batch, n_chunks, r, self.hop_size, channels)
        # Part i of chunk j lands on block j + i: shift it by i blocks with a constant pad.
        blocks = F.pad(parts[:, :, 0], (0, 0, 0, 0, 0, r - 1))
        for i in range(1, r):
            blocks = blocks + F.pad(parts[:, :, i], (0, 0, 0, 0, i, r - 1 - i))
        return blocks.reshape(batch, -1, channels)


MODEL = DPTNet


def streaming_step(model: DPTNet) -> nn.Module:
    """The one-hop-at-a-time form of a causal model (:class:`~.dptnet_stream.DPTNetStep`)."""
    from .dptnet_stream import DPTNetStep  # the step module imports this one

    return DPTNetStep(model)

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
    # Study student for stronger teachers: micro with half its feed-forward width, 43x fewer.
    "nano": dict(n_filters=16, kernel_size=64, stride=32, n_heads=2, ff_hid=8, chunk_size=100,
                 hop_size=50, n_repeats=1),
    "mini": dict(n_filters=16, kernel_size=16, stride=8, n_heads=2, ff_hid=16, chunk_size=20,
                 hop_size=10, n_repeats=1),
}
# Causal twins (the class doc's `causal`): the widths and depth of tiny / micro, chunks of K = 16
# frames (32 ms) with hop H = 8 (16 ms: the streaming hop), the inter-chunk attention over the
# current and 32 earlier chunks (0.5 s; the forward LSTM carries the rest). Latency K S + L - S =
# 544 samples = 34 ms (:func:`latency_samples`); K = 100 would be 201 ms. Fewer parameters than
# tiny / micro: the inter-chunk LSTM runs one way.
CAUSAL_SUFFIX = "-causal"
PRESETS.update({name + CAUSAL_SUFFIX: dict(PRESETS[name], chunk_size=16, hop_size=8,
                                           bidirectional=False, causal=True, past_chunks=32)
                for name in ("tiny", "micro")})


def _check_config(n_filters: int, n_heads: int, chunk_size: int, hop_size: int) -> None:
    if n_heads < 1 or n_filters % n_heads:
        # asteroid then inserts an extra Linear to a rounded-up width; we do not.
        raise DfkdError(f"DPTNet needs n_heads ({n_heads}) to divide n_filters ({n_filters})")
    if hop_size < 1 or chunk_size % hop_size:
        # Reshape-based chunking needs whole blocks; asteroid's K/H scaling is only exact then too.
        raise DfkdError(
            f"DPTNet needs hop_size ({hop_size}) to divide chunk_size ({chunk_size})"
        )


def _check_causal(causal: bool, bidirectional: bool, past_chunks: int | None, kernel_size: int,
                  stride: int) -> None:
    if not causal:
        if past_chunks is not None:
            raise DfkdError("DPTNet past_chunks bounds the causal inter-chunk attention: "
                            "it needs causal=True")
        return
    if bidirectional:
        raise DfkdError("DPTNet causal=True needs bidirectional=False (the inter-chunk LSTM "
                        "must run forward only)")
    if past_chunks is not None and past_chunks < 1:
        raise DfkdError(f"DPTNet past_chunks must be at least 1, got {past_chunks}")
    if kernel_size < stride:
        raise DfkdError(f"causal DPTNet needs kernel_size ({kernel_size}) >= stride ({stride})")


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

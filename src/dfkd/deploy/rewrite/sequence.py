"""Export-time rewrites of the real-valued sequence layers of Conv-TasNet and DPTNet.

A one-slope PReLU becomes ``LeakyRelu``; a gLN gets its gamma / beta folded into the 1x1 convs
that read it (Conv-TasNet) or loses the two transposes of its channel-last layout (DPTNet);
Conv-TasNet's TCN runs its 1-D convs as 2-D ones on ``(B, C, 1, T)``; DPTNet's self-attention
becomes ``com.microsoft.MultiHeadAttention`` and its LSTM + Linear a bare ONNX ``LSTM`` node with
the Linear applied per direction. Each module computes what the layer it replaces computes.
:func:`dfkd.deploy.rewrite.for_export` decides where each applies; the table in
:mod:`dfkd.deploy.rewrite` says what each one saves.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...models.dptnet import DualPathLayer, SelfAttention, SequenceGlobalLayerNorm
from ...models.layers import GlobalLayerNorm

CONTRIB_DOMAIN = "com.microsoft"


# ---------------------------------------------------------------------------------------------
# PReLU


class LeakyReLUFromPReLU(nn.Module):
    """A one-slope ``nn.PReLU`` with its slope frozen: ``x if x >= 0 else slope * x``.

    Exported as ``LeakyRelu(alpha=slope)`` (bit-identical: the float32 slope is exact as the
    attribute), which ONNX Runtime fuses into a preceding Conv.
    """

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.slope = float(prelu.weight.detach().reshape(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.slope)


# ---------------------------------------------------------------------------------------------
# gLN


class PlainGlobalLayerNorm(nn.Module):
    """gLN without its per-channel affine (exported as Reshape, InstanceNormalization, Reshape)."""

    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, 1, None, None, self.eps)


class ChannelLastGlobalLayerNorm(nn.Module):
    """DPTNet's channel-last gLN without its two transposes.

    The statistics span the whole sequence whatever the layout, so the ``(B, S, N)`` tensor is
    normalised as one row ``(B, 1, S N)`` (Reshape, InstanceNormalization, Reshape) and gamma /
    beta broadcast over the last axis; the model's version transposes to channel-first and back
    (two passes over the tensor per norm, four norms per dual-path block).
    """

    def __init__(self, norm: SequenceGlobalLayerNorm) -> None:
        super().__init__()
        self.register_buffer("gamma", norm.gamma.detach().clone())
        self.register_buffer("beta", norm.beta.detach().clone())
        self.eps = float(norm.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.group_norm(x.reshape(x.shape[0], 1, -1), 1, None, None, self.eps)
        return normed.reshape(x.shape) * self.gamma + self.beta


def fold_gln_into_pointwise(parent: nn.Module, norm_name: str, conv_names: list[str]) -> None:
    """Move the gamma / beta of ``parent.<norm_name>`` into the 1x1 convs that read its output.

    ``conv(gamma * n + beta) = (W gamma) n + (b + W beta)`` exactly for a kernel-1 conv, so the
    norm's Mul and Add (two passes over the tensor in ONNX Runtime) disappear. Only valid when
    every consumer of the norm's output is one of ``conv_names`` (Conv-TasNet: a block's
    ``dw_norm`` feeds ``res_conv`` and ``skip_conv``; the masker's ``in_norm`` feeds the
    bottleneck). Convs that are ``None`` (no skip path) are skipped. Modifies ``parent`` in place.
    """
    norm = getattr(parent, norm_name)
    if not isinstance(norm, GlobalLayerNorm):
        return
    gamma, beta = norm.gamma.detach().double(), norm.beta.detach().double()
    for name in conv_names:
        conv = getattr(parent, name)
        if conv is None:
            continue
        if not (isinstance(conv, nn.Conv1d) and conv.kernel_size == (1,) and conv.groups == 1):
            return
    for name in conv_names:
        conv = getattr(parent, name)
        if conv is None:
            continue
        weight = conv.weight.detach().double()[:, :, 0]  # (out, in)
        bias = (conv.bias.detach().double() if conv.bias is not None
                else weight.new_zeros(len(weight)))
        folded = copy.deepcopy(conv)
        folded.weight = nn.Parameter((weight * gamma).float().unsqueeze(-1), requires_grad=False)
        folded.bias = nn.Parameter((bias + weight @ beta).float(), requires_grad=False)
        setattr(parent, name, folded)
    setattr(parent, norm_name, PlainGlobalLayerNorm(norm.eps))


class Conv1dAs2d(nn.Module):
    """A ``Conv1d`` as the equal ``Conv2d`` with a ``(1, k)`` kernel, on ``(B, C, 1, T)`` inputs."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        # skip_init: no random initialisation (the weights are copied below; the global RNG
        # stays untouched, so exporting does not change what a seeded script draws next)
        self.conv = nn.utils.skip_init(
            nn.Conv2d, conv.in_channels, conv.out_channels, (1, conv.kernel_size[0]),
            stride=(1, conv.stride[0]), padding=(0, conv.padding[0]),
            dilation=(1, conv.dilation[0]), groups=conv.groups, bias=conv.bias is not None,
            device=conv.weight.device)
        self.conv.weight = nn.Parameter(conv.weight.detach().unsqueeze(2).clone(),
                                        requires_grad=False)
        if conv.bias is not None:
            self.conv.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class RunAs2d(nn.Module):
    """Run a module of 1-D convolutions on ``(B, C, 1, T)``: its ``Conv1d`` become ``Conv2d``.

    ONNX Runtime lays 2-D convolutions out in blocked NCHWc (16 channels a block with AVX-512),
    where its convolution kernels run about twice as fast as on 1-D NCW tensors, depthwise and
    dilated ones included, and a residual Add or an activation is fused into the Conv; a reorder
    in and out is paid around every other operator (here the gLN). Conv-TasNet's TCN gains
    ~1.3-1.6x. The wrapped module must treat its third axis as time (gLN, PReLU, Add do).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        _convs_to_2d(module)
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.unsqueeze(2)).squeeze(2)


def _convs_to_2d(parent: nn.Module) -> None:
    for name, child in parent.named_children():
        if isinstance(child, nn.Conv1d):
            setattr(parent, name, Conv1dAs2d(child))
        else:
            _convs_to_2d(child)


# ---------------------------------------------------------------------------------------------
# Attention


class _MultiHeadAttention(torch.autograd.Function):
    """Scaled dot-product attention of projected ``q, k, v`` (``(B, S, N)``) plus their bias.

    Exported as ``com.microsoft.MultiHeadAttention``: ONNX Runtime adds the bias while splitting
    heads and runs its flash-attention CPU kernel (no ``(S, S)`` score tensor in memory).
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor, n_heads: int) -> torch.Tensor:
        batch, seq, channels = q.shape
        bias_q, bias_k, bias_v = bias.chunk(3)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(batch, seq, n_heads, channels // n_heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q + bias_q), heads(k + bias_k),
                                             heads(v + bias_v))
        return out.transpose(1, 2).reshape(batch, seq, channels)

    @staticmethod
    def symbolic(g, q, k, v, bias, n_heads: int):  # pragma: no cover - run by the exporter
        out = g.op(f"{CONTRIB_DOMAIN}::MultiHeadAttention", q, k, v, bias, num_heads_i=n_heads)
        out.setType(q.type())  # same shape and dtype as the query (for the exporter's inference)
        return out


class FusedSelfAttention(nn.Module):
    """DPTNet's :class:`~dfkd.models.dptnet.SelfAttention` with a fused attention kernel in ONNX.

    The packed in-projection becomes three bias-free projections (so q, k, v come out contiguous,
    with no Split) and the bias moves into the attention op.
    """

    CONTRIB_OPS = True

    def __init__(self, attention: SelfAttention) -> None:
        super().__init__()
        self.n_heads = attention.n_heads
        w_q, w_k, w_v = attention.in_proj.weight.detach().chunk(3)
        self.register_buffer("w_q", w_q.clone())
        self.register_buffer("w_k", w_k.clone())
        self.register_buffer("w_v", w_v.clone())
        self.register_buffer("in_bias", attention.in_proj.bias.detach().clone())
        self.out_proj = copy.deepcopy(attention.out_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = _MultiHeadAttention.apply(F.linear(x, self.w_q), F.linear(x, self.w_k),
                                          F.linear(x, self.w_v), self.in_bias, self.n_heads)
        return self.out_proj(heads)


# ONNX LSTM gate blocks are i, o, f, c; PyTorch's are i, f, g (= c), o
_TORCH_GATE_ORDER = [0, 2, 3, 1]


class _OnnxLSTM(torch.autograd.Function):
    """One LSTM layer on a sequence-first input, weights in ONNX layout; output as ONNX's ``Y``.

    ``x (S, B, I)`` -> ``(S, D, B, H)`` (``D`` directions). Exported as a bare ``LSTM`` node: no
    initial-state inputs and none of the Transpose / Reshape pairs the exporter wraps around
    ``nn.LSTM(batch_first=True)`` (two passes over the ``2 H``-wide output per layer).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, r: torch.Tensor,  # type: ignore[override]
                b: torch.Tensor, hidden: int) -> torch.Tensor:
        directions = int(w.shape[0])  # a plain int also while the exporter traces

        def torch_gates(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(0, (4, hidden))[_TORCH_GATE_ORDER].flatten(0, 1)

        params = []
        for d in range(directions):
            params += [torch_gates(w[d]), torch_gates(r[d]), torch_gates(b[d, : 4 * hidden]),
                       torch_gates(b[d, 4 * hidden:])]
        h0 = x.new_zeros(directions, x.shape[1], hidden)
        out = torch.lstm(x, (h0, h0), params, True, 1, 0.0, False, directions == 2, False)[0]
        return out.unflatten(2, (directions, hidden)).transpose(1, 2)

    @staticmethod
    def symbolic(g, x, w, r, b, hidden: int):  # pragma: no cover - run by the exporter
        directions = w.type().sizes()[0]
        direction = "bidirectional" if directions == 2 else "forward"
        y, _, _ = g.op("LSTM", x, w, r, b, hidden_size_i=hidden, direction_s=direction, outputs=3)
        return y


def _onnx_lstm_weights(lstm: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``W (D, 4H, I)``, ``R (D, 4H, H)``, ``B (D, 8H)`` in ONNX gate order (i, o, f, c)."""
    onnx_order = [0, 3, 1, 2]  # from PyTorch's i, f, g, o

    def gates(t: torch.Tensor) -> torch.Tensor:
        return t.detach().unflatten(0, (4, lstm.hidden_size))[onnx_order].flatten(0, 1)

    suffixes = ["", "_reverse"] if lstm.bidirectional else [""]
    w = torch.stack([gates(getattr(lstm, f"weight_ih_l0{s}")) for s in suffixes])
    r = torch.stack([gates(getattr(lstm, f"weight_hh_l0{s}")) for s in suffixes])
    b = torch.stack([torch.cat([gates(getattr(lstm, f"bias_ih_l0{s}")),
                                gates(getattr(lstm, f"bias_hh_l0{s}"))]) for s in suffixes])
    return w, r, b


class SequenceFirstDualPathLayer(nn.Module):
    """DPTNet's :class:`~dfkd.models.dptnet.DualPathLayer` with its LSTM kept sequence-first.

    Same function: ``x = gLN(x + MHA(x))``, ``x = gLN(x + Linear(ReLU(LSTM(x))))``. ONNX's LSTM
    is sequence-first and writes ``Y (S, D, B, H)``; instead of transposing that ``2 H``-wide
    output back to batch-first (twice, as the exporter does), the feed-forward Linear is applied
    per direction in that layout, ``sum_d ReLU(Y_d) W_d``, and only its ``N``-wide result is
    transposed. On ``paper`` (``2 H = 256``, ``N = 64``) that saves most of the layer's data
    movement outside the LSTM kernel.
    """

    def __init__(self, layer: DualPathLayer, contrib_ops: bool) -> None:
        super().__init__()
        attention = layer.attention
        self.attention = FusedSelfAttention(attention) if contrib_ops else copy.deepcopy(attention)
        self.attention_norm = ChannelLastGlobalLayerNorm(layer.attention_norm)
        self.ff_norm = ChannelLastGlobalLayerNorm(layer.ff_norm)
        lstm = layer.lstm
        if lstm.num_layers != 1 or not lstm.batch_first or lstm.proj_size or not lstm.bias:
            raise ValueError("SequenceFirstDualPathLayer expects DPTNet's one-layer LSTM")
        self.hidden = lstm.hidden_size
        w, r, b = _onnx_lstm_weights(lstm)
        self.register_buffer("lstm_w", w)
        self.register_buffer("lstm_r", r)
        self.register_buffer("lstm_b", b)
        directions = w.shape[0]
        # Linear weight (N, D H) -> one (H, N) block per direction
        weight = layer.linear.weight.detach()
        self.register_buffer("ff_weight", weight.t().reshape(directions, self.hidden, -1).clone())
        self.register_buffer("ff_bias", layer.linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, seq, N) -> same
        x = self.attention_norm(x + self.attention(x))
        y = _OnnxLSTM.apply(x.transpose(0, 1), self.lstm_w, self.lstm_r, self.lstm_b, self.hidden)
        ff = (torch.relu(y) @ self.ff_weight).sum(1)  # (S, D, B, H) @ (D, H, N) -> (S, B, N)
        return self.ff_norm(x + ff.transpose(0, 1) + self.ff_bias)

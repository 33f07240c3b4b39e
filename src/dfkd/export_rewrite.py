"""Export-time rewrites: layers swapped for equivalents that ONNX Runtime runs fast on CPU.

The models are written for training and PyTorch eager. Some of their layers export to ONNX graphs
that ONNX Runtime's CPU provider runs slowly (measured with its profiler on the ``paper`` and
``student`` presets; see ``README.md, "Deployment"``). :func:`for_export` returns an eval-mode
copy of a model in which those layers are replaced by modules that compute the same function
(float rounding aside) and export to faster operators. The model files stay untouched, training
never sees these modules, and :func:`dfkd.export.export_checked` still compares the exported graph
with the *original* model.

=========================== ============================= =========================================
layer                       exported as before            exported as now (why)
=========================== ============================= =========================================
``nn.PReLU``, one slope     ``PRelu``                     ``LeakyRelu(alpha=slope)``, fused into the
                                                          Conv before it (ORT's PRelu is a generic
                                                          broadcasting kernel: 36 % of Conv-TasNet)
Conv-TasNet TCN             ``Conv`` on 1-D ``(B, C, T)`` ``Conv`` on ``(B, C, 1, T)``, which ORT
                                                          runs in its blocked NCHWc layout (about
                                                          twice as fast, Add/activation fused)
Conv-TasNet gLN before a    InstanceNormalization, then   gamma/beta folded into the 1x1 conv
1x1 conv                    Mul, Add                      weights (two passes fewer)
DPTNet ``SelfAttention``    MatMul, Mul, Softmax, MatMul, q/k/v MatMuls + ``com.microsoft.
                            Transposes, Split             MultiHeadAttention`` (ORT's fused flash
                                                          attention kernel, bias folded in)
DPTNet LSTM + Linear        Transpose, LSTM, Transpose,   bare LSTM; the Linear applied per
                            Reshape, Transpose, MatMul    direction on its sequence-first output
                                                          (two transposes of the 2H-wide output
                                                          fewer per layer)
DPTNet channel-last gLN     Transpose, Reshape, Instance- Reshape, InstanceNormalization, Reshape,
                            Normalization, ..., Transpose Mul, Add (no transposes)
DCCRN encoder / decoder     (Transposed) Conv of weights  BatchNorm folded into the weights; each of
blocks, output layer        concatenated at run time,     the real / imaginary halves one ``Conv``
                            BatchNormalization, PRelu     with a fused ``LeakyRelu``; transposed
                                                          convs in polyphase form (ORT's
                                                          ConvTranspose was 58 % of DCCRN's time)
=========================== ============================= =========================================

Tried and left out: ``LayerNormalization(axis=1)`` for gLN (one op instead of five, but ORT's
kernel was slower than InstanceNormalization on Conv-TasNet's long rows and no faster in DPTNet,
and it computes the variance as E[x^2] - E[x]^2 in float32); the LSTM as an ONNX ``Scan`` (1.5x
slower than ORT's LSTM). ORT's LSTM kernel itself stays 1.1-1.5x slower than PyTorch's oneDNN LSTM
on DPTNet's shapes (per-row gate activations), which is why DPTNet gains least.

``com.microsoft`` operators make the file ONNX-Runtime specific (which ``dfkd enhance`` and any
onnxruntime install run); ``for_export(model, contrib_ops=False)`` keeps to standard ONNX.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .models.complex_layers import ComplexConv2d, ComplexConvTranspose2d, ComplexPReLU, OnReIm
from .models.conv_tasnet import TCNMasker, TemporalBlock
from .models.dccrn import DecoderBlock, EncoderBlock
from .models.dptnet import DualPathLayer, SelfAttention, SequenceGlobalLayerNorm
from .models.layers import GlobalLayerNorm

CONTRIB_DOMAIN = "com.microsoft"


def for_export(model: nn.Module, contrib_ops: bool = True) -> nn.Module:
    """An eval-mode deep copy of ``model`` with every known layer swapped for its fast equivalent.

    ``contrib_ops=False`` leaves out rewrites that need ONNX Runtime's ``com.microsoft`` operators.
    The original ``model`` is not modified.
    """
    model = copy.deepcopy(getattr(model, "module", model)).eval()
    _swap_children(model, contrib_ops)
    return model


def uses_contrib_ops(model: nn.Module) -> bool:
    """Whether exporting ``model`` emits ``com.microsoft`` operators (the exporter must know)."""
    return any(getattr(m, "CONTRIB_OPS", False) for m in model.modules())


def _swap_children(parent: nn.Module, contrib_ops: bool) -> None:
    for name, child in parent.named_children():
        replacement = _replacement(child, contrib_ops)
        if replacement is not None:
            setattr(parent, name, replacement)
        else:
            _swap_children(child, contrib_ops)


def _replacement(module: nn.Module, contrib_ops: bool) -> nn.Module | None:
    if isinstance(module, nn.PReLU) and module.weight.numel() == 1:
        return LeakyReLUFromPReLU(module)
    if isinstance(module, TemporalBlock):
        fold_gln_into_pointwise(module, "dw_norm", ["res_conv", "skip_conv"])
    if isinstance(module, TCNMasker):
        fold_gln_into_pointwise(module, "in_norm", ["bottleneck"])
        _swap_children(module, contrib_ops)
        return RunAs2d(module)
    if isinstance(module, DualPathLayer):
        return SequenceFirstDualPathLayer(module, contrib_ops)
    if isinstance(module, SelfAttention) and contrib_ops:
        return FusedSelfAttention(module)
    if isinstance(module, (EncoderBlock, DecoderBlock)):
        return FoldedComplexConv.from_block(module)
    if isinstance(module, (ComplexConv2d, ComplexConvTranspose2d)):
        return FoldedComplexConv.from_conv(module, None, None)
    return None


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


# ---------------------------------------------------------------------------------------------
# DCCRN: complex (transposed) conv + BatchNorm + PReLU


def transposed_conv_as_conv(weight: torch.Tensor, stride: int, padding: int, output_padding: int,
                            ) -> tuple[torch.Tensor, int, int] | None:
    """Polyphase form of a ``conv_transpose2d`` strided along the first spatial axis only.

    ``conv_transpose2d(x, weight, stride=(s, 1), padding=(p, pt))`` equals, for every input,
    ``conv2d`` of ``x`` zero-padded by ``(left, right)`` along the first axis and by ``kt-1-pt``
    along the second, with the returned weight of shape ``(s * C_out, C_in, K, kt)``, followed by
    interleaving the ``s`` phase groups of output channels along the first axis (phase ``r`` gives
    output rows ``r, r + s, ...``). Phase ``r`` uses taps ``k = (r + p) mod s + j s`` of the
    transposed kernel; taps a phase lacks are zero (for kernel 5, stride 2: 6 taps instead of 5,
    still far cheaper in ONNX Runtime than its ConvTranspose). The time kernel is flipped.

    Returns ``(weight, left, right)``, or ``None`` when the output length is not a multiple of
    ``s`` (the phases would differ in length) or a padding would be negative.

    Args:
        weight: transposed-conv weight ``(C_in, C_out, kf, kt)``.
        stride: stride along the first spatial axis.
        padding: padding ``p`` along the first spatial axis.
        output_padding: output padding along the first spatial axis.
    """
    c_in, c_out, kf, kt = weight.shape
    s, p = stride, padding
    growth = kf + output_padding - 2 * p - s  # F_out - s * F_in, independent of F_in
    if growth % s:
        return None
    taps = []  # per phase: (kernel tap k, input offset e) with output m reading input m + e
    for r in range(s):
        k0 = (r + p) % s
        d = (r + p - k0) // s
        taps.append([(k, d - j) for j, k in enumerate(range(k0, kf, s))])
    offsets = [e for phase in taps for _, e in phase]
    e_min, e_max = min(offsets), max(offsets)
    size = e_max - e_min + 1
    left = -e_min
    right = growth // s - 1 + size - left  # so that phase outputs have F_in + growth / s rows
    if left < 0 or right < 0:
        return None
    conv = weight.new_zeros(s, c_out, c_in, size, kt)
    flipped = weight.flip(-1).transpose(0, 1)  # (C_out, C_in, kf, kt), time reversed
    for r, phase in enumerate(taps):
        for k, e in phase:
            conv[r, :, :, e - e_min] = flipped[:, :, k]
    return conv.reshape(s * c_out, c_in, size, kt), left, right


def _fold_batchnorm(norm: OnReIm) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per real channel ``(scale, shift)`` of eval-mode BatchNorms on re / im (``2 C`` each)."""
    scales, shifts = [], []
    for bn in (norm.re, norm.im):
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_mean is None:
            return None  # batch statistics at inference cannot be folded
        inv_std = torch.rsqrt(bn.running_var.double() + bn.eps)
        weight = bn.weight.double() if bn.weight is not None else torch.ones_like(inv_std)
        bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(inv_std)
        scales.append(weight * inv_std)
        shifts.append(bias - bn.running_mean.double() * weight * inv_std)
    return torch.cat(scales), torch.cat(shifts)


class FoldedComplexConv(nn.Module):
    """A DCCRN complex (transposed) conv, optionally with its BatchNorm and PReLU, as real Convs.

    Input and output are DCCRN's ``(B, 2, C, F, T)`` complex layout. The complex weight
    ``[[W_r, -W_i], [W_i, W_r]]`` acts on the ``2 C`` real channels; BatchNorm (eval statistics)
    is folded into weight and bias; with a PReLU the real and the imaginary output halves are two
    Convs, each followed by ``LeakyRelu`` of its part's slope (fused into the Conv by ONNX
    Runtime). A transposed conv runs in polyphase form (:func:`transposed_conv_as_conv`).

    Build with :meth:`from_block` (Encoder/DecoderBlock) or :meth:`from_conv`.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: tuple[int, int],
                 padding: tuple[int, int, int, int], phases: int,
                 slopes: tuple[float, float] | None) -> None:
        super().__init__()
        # One Conv per part when each part has its own activation slope, else one Conv in all.
        self.groups = 1 if slopes is None else 2
        for index, (w, b) in enumerate(zip(weight.chunk(self.groups), bias.chunk(self.groups))):
            self.register_buffer(f"weight{index}", w.float().contiguous())
            self.register_buffer(f"bias{index}", b.float().contiguous())
        self.stride = stride
        self.padding = padding  # (freq left, freq right, time both sides, unused)
        self.phases = phases
        self.slopes = slopes

    @classmethod
    def from_block(cls, block: EncoderBlock | DecoderBlock) -> nn.Module | None:
        """Fold an encoder / decoder block (conv, BatchNorm on re/im, PReLU on re/im)."""
        folded = _fold_batchnorm(block.norm)
        if folded is None or not isinstance(block.act, ComplexPReLU):
            return None
        slopes = (float(block.act.re.weight.detach().reshape(())),
                  float(block.act.im.weight.detach().reshape(())))
        return cls.from_conv(block.conv, folded, slopes)

    @classmethod
    def from_conv(cls, conv: ComplexConv2d | ComplexConvTranspose2d,
                  norm: tuple[torch.Tensor, torch.Tensor] | None,
                  slopes: tuple[float, float] | None) -> nn.Module | None:
        """The real-conv form of ``conv``; ``norm = (scale, shift)`` per real output channel."""
        w_r, w_i = conv.re.weight.detach().double(), conv.im.weight.detach().double()
        if conv.re.bias is not None:
            b_r, b_i = conv.re.bias.detach().double(), conv.im.bias.detach().double()
            bias = torch.cat([b_r - b_i, b_r + b_i])
        else:
            bias = w_r.new_zeros(2 * (w_r.shape[1] if isinstance(conv, ComplexConvTranspose2d)
                                      else w_r.shape[0]))
        if isinstance(conv, ComplexConvTranspose2d):
            if conv.stride[1] != 1 or conv.output_padding[1] != 0:
                return None
            block = torch.cat([torch.cat([w_r, w_i], 1), torch.cat([-w_i, w_r], 1)], 0)
            polyphase = transposed_conv_as_conv(block, conv.stride[0], conv.padding[0],
                                                conv.output_padding[0])
            kt = block.shape[-1]
            if polyphase is None or kt - 1 - conv.padding[1] < 0:
                return None
            weight, left, right = polyphase
            phases, c_out = conv.stride[0], block.shape[1]
            # (phase, part, channel) -> (part, phase, channel): halves split by part for PReLU
            weight = weight.unflatten(0, (phases, 2, c_out // 2)).transpose(0, 1).flatten(0, 2)
            stride = (1, 1)
            padding = (left, right, kt - 1 - conv.padding[1], 0)
        else:
            weight = torch.cat([torch.cat([w_r, -w_i], 1), torch.cat([w_i, w_r], 1)], 0)
            c_out, phases, stride = weight.shape[0], 1, conv.stride
            padding = (conv.padding[0], conv.padding[0], conv.padding[1], 0)
        if norm is not None:
            scale, shift = norm
            bias = bias * scale + shift
        else:
            scale = torch.ones_like(bias)
        # bias and scale are per real output channel (part, channel); repeat them per phase
        per_phase = lambda t: t.reshape(2, 1, -1).expand(2, phases, -1).flatten()  # noqa: E731
        weight = weight * per_phase(scale)[:, None, None, None]
        return cls(weight, per_phase(bias), stride, padding, phases, slopes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, C_in, F, T)`` -> ``(B, 2, C_out, F', T')``."""
        left, right, time_pad, _ = self.padding
        x = x.flatten(1, 2)
        if left != right:
            x = F.pad(x, (0, 0, left, right))
            padding = (0, time_pad)
        else:
            padding = (left, time_pad)
        parts = []
        for index in range(self.groups):
            y = F.conv2d(x, getattr(self, f"weight{index}"), getattr(self, f"bias{index}"),
                         self.stride, padding)
            if self.slopes is not None:
                y = F.leaky_relu(y, self.slopes[index])
            parts.append(y)
        y = torch.cat(parts, 1) if len(parts) > 1 else parts[0]  # (B, 2 * phases * C_out, F, T)
        if self.phases == 1:
            return y.unflatten(1, (2, -1))
        # (B, [part, phase, channel], M, T) -> (B, part, channel, M, phase, T) -> rows interleaved
        y = y.unflatten(1, (2, self.phases, -1)).permute(0, 1, 3, 4, 2, 5)
        return y.flatten(3, 4)


"""Export-time rewrite of DCCRN's complex (transposed) convolutions as real convolutions.

A complex conv, with the eval-mode BatchNorm and the PReLU of its encoder / decoder block, becomes
real ``Conv`` layers on the ``2 C`` real channels (:class:`FoldedComplexConv`): BatchNorm folded
into weight and bias, each part's PReLU a ``LeakyRelu`` that ONNX Runtime fuses into its Conv. A
transposed conv strided in frequency runs in polyphase form (:func:`transposed_conv_as_conv`):
ONNX Runtime's ConvTranspose was 58 % of DCCRN's CPU time. :func:`dfkd.deploy.rewrite.for_export`
decides where it applies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...models.complex_layers import (
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexPReLU,
    OnReIm,
    complex_block_weight,
)
from ...models.dccrn import DecoderBlock, EncoderBlock


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
            block = complex_block_weight(w_r, w_i, transposed=True)
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
            weight = complex_block_weight(w_r, w_i)
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

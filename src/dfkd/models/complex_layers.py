"""Complex-valued layers of DCCRN built from real tensors (export-friendly, no complex dtype).

After Hu et al., "DCCRN: Deep Complex Convolution Recurrent Network for Phase-Aware Speech
Enhancement", Interspeech 2020 (arXiv 2008.00264), Section 2.2, with asteroid 0.7.0's layout:

- a complex tensor is one real tensor ``(batch, 2, channels, ...)``: index 0 of axis 1 is the real
  part, index 1 the imaginary part, so "concatenate complex channels" is a ``cat`` on axis 2;
- a complex layer holds two real layers ``re`` (W_r) and ``im`` (W_i) and computes
  ``(W_r * a - W_i * b) + i (W_r * b + W_i * a)`` for an input ``a + i b``;
- BatchNorm and PReLU act on the real and imaginary parts separately, each with its own
  parameters (asteroid's ``OnReIm``; not a complex/whitening BatchNorm).

The convolutions run as ONE real convolution with the block weight ``[[W_r, -W_i], [W_i, W_r]]``
on the ``2 * channels`` real channels: the same products as asteroid's four convolutions, in one
call, which is faster on CPU and gives a smaller ONNX graph. The LSTMs and Linears instead run
both parts through each real layer as a doubled batch. The mask DCCRN applies (:func:`bound_mask`,
:func:`complex_multiply`) lives here too, so the offline model and its streaming step
(:mod:`dfkd.models.dccrn_stream`) share it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def complex_block_weight(
    w_r: torch.Tensor, w_i: torch.Tensor, *, transposed: bool = False
) -> torch.Tensor:
    """Real block weight ``[[W_r, -W_i], [W_i, W_r]]`` of a complex convolution.

    Rows of the block are the output's real and imaginary halves, columns the input's (``a``, then
    ``b``), so one real convolution over ``2 * channels`` computes ``(W_r a - W_i b) + i (W_i a +
    W_r b)``.

    Args:
        w_r: weight of the real-part layer.
        w_i: weight of the imaginary-part layer, same shape.
        transposed: ``False`` for a convolution weight ``(out, in, ...)``; ``True`` for a
            transposed-convolution weight ``(in, out, ...)``, where the output axis is 1.
    """
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    real_out = torch.cat([w_r, -w_i], in_dim)
    imag_out = torch.cat([w_i, w_r], in_dim)
    return torch.cat([real_out, imag_out], out_dim)


def complex_block_bias(re: nn.Module, im: nn.Module) -> torch.Tensor | None:
    """Real bias ``[b_r - b_i, b_r + b_i]`` of a complex layer (as asteroid), or ``None``."""
    if re.bias is None:
        return None
    return torch.cat([re.bias - im.bias, re.bias + im.bias])


class ComplexConv2d(nn.Module):
    """Complex 2-D convolution over ``(freq, time)``.

    Args:
        in_channels: complex input channels.
        out_channels: complex output channels.
        kernel_size: ``(freq, time)`` kernel.
        stride: ``(freq, time)`` stride.
        padding: ``(freq, time)`` zero padding on both sides.
        bias: add a complex bias (real part ``b_r - b_i``, imaginary part ``b_r + b_i``, as
            asteroid).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.padding = _pair(stride), _pair(padding)
        # Two ordinary Conv2d hold the weights: default init and asteroid-compatible keys.
        self.re = nn.Conv2d(
            in_channels, out_channels, kernel_size, self.stride, self.padding, bias=bias
        )
        self.im = nn.Conv2d(
            in_channels, out_channels, kernel_size, self.stride, self.padding, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, C_in, F, T)`` -> ``(B, 2, C_out, F', T')``."""
        weight = complex_block_weight(self.re.weight, self.im.weight)  # (out, in, kf, kt) blocks
        bias = complex_block_bias(self.re, self.im)
        y = F.conv2d(x.flatten(1, 2), weight, bias, self.stride, self.padding)
        return y.unflatten(1, (2, -1))


class ComplexConvTranspose2d(nn.Module):
    """Complex 2-D transposed convolution over ``(freq, time)``; weights are (in, out, kf, kt).

    Args:
        in_channels: complex input channels.
        out_channels: complex output channels.
        kernel_size: ``(freq, time)`` kernel.
        stride: ``(freq, time)`` stride.
        padding: ``(freq, time)`` padding removed from both sides of the output.
        output_padding: extra ``(freq, time)`` output rows on the high side.
        bias: add a complex bias (as :class:`ComplexConv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        output_padding: tuple[int, int] = (0, 0),
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.output_padding = _pair(output_padding)
        args = (
            in_channels,
            out_channels,
            kernel_size,
            self.stride,
            self.padding,
            self.output_padding,
        )
        self.re = nn.ConvTranspose2d(*args, bias=bias)
        self.im = nn.ConvTranspose2d(*args, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, C_in, F, T)`` -> ``(B, 2, C_out, F', T')``."""
        # (in, out, kf, kt): axis 0 indexes the input (a, then b), axis 1 the output (re, im).
        weight = complex_block_weight(self.re.weight, self.im.weight, transposed=True)
        bias = complex_block_bias(self.re, self.im)
        y = F.conv_transpose2d(
            x.flatten(1, 2), weight, bias, self.stride, self.padding, self.output_padding
        )
        return y.unflatten(1, (2, -1))


class OnReIm(nn.Module):
    """Apply two independent real modules to the real and the imaginary part.

    Args:
        make: factory called twice, for the ``re`` and the ``im`` module.
    """

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.re = make()
        self.im = make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, ...)`` -> ``(B, 2, ...)``."""
        # unbind (not x[:, 0], x[:, 1]): its backward is one stack instead of two zero-filled copies
        real, imag = x.unbind(1)
        return torch.stack([self.re(real), self.im(imag)], dim=1)


class ComplexPReLU(nn.Module):
    """PReLU with one slope for the real part and one for the imaginary part (asteroid's layout).

    Both parts go through one ``F.prelu`` call, with the part axis as PReLU's channel axis.
    """

    def __init__(self) -> None:
        super().__init__()
        self.re = nn.PReLU()
        self.im = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, ...)`` -> same shape."""
        slopes = torch.cat([self.re.weight, self.im.weight])
        return F.prelu(x.flatten(2), slopes).view_as(x)


class ComplexLSTM(nn.Module):
    """Stack of complex unidirectional LSTM layers (DCCRN's "complex LSTM", paper eq. 3).

    Each layer is a pair of real LSTMs: ``re = LSTM_r(a) - LSTM_i(b)``, ``im = LSTM_r(b) +
    LSTM_i(a)``; the next layer reads this complex output. Both parts go through each real LSTM as
    one batch of ``2 B`` sequences.

    Args:
        input_size: complex input features per frame.
        hidden_size: hidden (and output) size of every real LSTM.
        num_layers: number of complex layers.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        for index in range(num_layers):
            size = input_size if index == 0 else hidden_size
            self.layers.append(
                ComplexMultiply(lambda size=size: nn.LSTM(size, hidden_size, batch_first=True))
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, frames, features)`` -> ``(B, 2, frames, hidden)``."""
        for layer in self.layers:
            x = layer(x)
        return x


class ComplexMultiply(nn.Module):
    """Complex multiplication rule for real sequence layers (LSTM, Linear) of ``(B, N, D)`` inputs.

    Real layers ``re`` and ``im`` each see both parts (``a`` and ``b``) as one doubled batch; the
    results combine as ``(re(a) - im(b)) + i (re(b) + im(a))``.

    Args:
        make: factory called twice, for the ``re`` and the ``im`` module.
    """

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.re = make()
        self.im = make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, N, D)`` -> ``(B, 2, N, D')``."""
        both = x.flatten(0, 1)  # (2B, N, D), parts interleaved per utterance
        out_re, out_im = self._run(self.re, both), self._run(self.im, both)
        out_re = out_re.unflatten(0, (-1, 2))
        out_im = out_im.unflatten(0, (-1, 2))
        real = out_re[:, 0] - out_im[:, 1]
        imag = out_re[:, 1] + out_im[:, 0]
        return torch.stack([real, imag], dim=1)

    @staticmethod
    def _run(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, nn.LSTM):
            # Explicit zero states sized from the input: the exporter otherwise bakes the traced
            # batch size into the implicit initial state and a different batch fails in ONNX.
            # cuDNN also wants a contiguous state, which an expanded view is not.
            state = (
                (x[:, :1, :1] * 0).transpose(0, 1).expand(layer.num_layers, -1, layer.hidden_size)
            ).contiguous()
            return layer(x, (state, state))[0]
        return layer(x)


class ComplexLinear(ComplexMultiply):
    """Complex fully connected layer (two real ``nn.Linear``; complex bias as asteroid).

    Args:
        in_features: complex input features.
        out_features: complex output features.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(lambda: nn.Linear(in_features, out_features))


MASK_BOUNDS = ("tanh", "sigmoid", "none")
# |M| = sqrt(re^2 + im^2 + eps), asteroid-filterbanks' magphase epsilon.
MASK_EPS = 1e-8


def bound_mask(mask: torch.Tensor, bound: str) -> torch.Tensor:
    """Bound a complex mask ``(B, 2, F, T)`` (Choi et al. 2019 as used by DCCRN, paper eq. 7).

    ``tanh``: ``tanh(|M|) e^{i phase(M)}`` written as ``tanh(|M|) * M / |M|`` (no atan2, exports and
    has a finite gradient at 0), with ``|M| = sqrt(re^2 + im^2 + 1e-8)``. ``sigmoid``: a sigmoid on
    the real and imaginary parts (asteroid's BDSS). ``none``: the raw mask.

    Args:
        mask: the network's raw complex mask.
        bound: one of ``MASK_BOUNDS``.
    """
    if bound == "tanh":
        magnitude = torch.sqrt(mask.pow(2).sum(dim=1, keepdim=True) + MASK_EPS)
        return mask * (torch.tanh(magnitude) / magnitude)
    if bound == "sigmoid":
        return torch.sigmoid(mask)
    return mask


def complex_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Product of two complex tensors stored as ``(B, 2, ...)``."""
    real = a[:, 0] * b[:, 0] - a[:, 1] * b[:, 1]
    imag = a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0]
    return torch.stack([real, imag], dim=1)

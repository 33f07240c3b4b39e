"""Layers shared by the architectures, written to export to ONNX.

No ``torch.stft``, no complex dtype, no ``unfold``/``fold``, no Python branches on data: only
convolutions, reshapes, pads and slices whose sizes follow from the input's shape.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DfkdError


def check_waveforms(noisy: torch.Tensor, model: str, min_samples: int = 1,
                    dtype: torch.dtype | None = None) -> None:
    """Raise a one-line :class:`DfkdError` unless ``noisy`` is a float ``(batch, samples)`` tensor.

    ``dtype``: the model's weight dtype, which the input must have. Called first by every model's ``forward``, outside traced graphs (``torch.jit.is_tracing``),
    so that a 1-D clip or a ``(batch, 1, samples)`` tensor is told what the model takes instead of
    failing deep inside a convolution.
    """
    if torch.jit.is_tracing():
        return
    if not isinstance(noisy, torch.Tensor):
        raise DfkdError(f"{model} takes a torch.Tensor of shape (batch, samples), "
                        f"got {type(noisy).__name__} (dfkd.load(...).enhance takes numpy too)")
    if noisy.dim() != 2 or noisy.shape[-1] < min_samples:
        hint = " (one clip: model(x[None]))" if noisy.dim() == 1 else ""
        raise DfkdError(f"{model} takes float32 waveforms of shape (batch, samples) with samples "
                        f">= {min_samples}, got shape {tuple(noisy.shape)}{hint}")
    if not noisy.is_floating_point() or (dtype is not None and noisy.dtype != dtype):
        want = str(dtype or torch.float32).replace("torch.", "")
        raise DfkdError(f"{model} takes {want} waveforms (batch, samples), got dtype "
                        f"{str(noisy.dtype).replace('torch.', '')} (convert with .to(torch.{want}); "
                        "integer PCM scaled to [-1, 1])")


class GlobalLayerNorm(nn.Module):
    """Global layer norm (gLN) of Conv-TasNet (Luo & Mesgarani 2019, eq. 13).

    Normalises each sample of a ``(batch, channels, time)`` tensor over channels and time together,
    with the biased variance and ``eps=1e-8`` as in asteroid 0.7.0, then applies a per-channel
    ``gamma``/``beta``.
    """

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # group_norm with one group computes exactly these statistics in one fused kernel: it
        # halves a Conv-TasNet training step compared with explicit mean/var/div ops (measured),
        # matches them to ~1e-7 and exports to ONNX (InstanceNormalization on a reshape).
        return F.group_norm(x, 1, self.gamma, self.beta, self.eps)


class CumulativeLayerNorm(nn.Module):
    """Cumulative layer norm (cLN) of causal Conv-TasNet (Luo & Mesgarani 2019, eqs. 14-16).

    Frame ``k`` of a ``(batch, channels, time)`` tensor is normalised with the mean and (biased)
    variance of every channel of frames ``0..k``: no statistic reads the future, so the layer is
    causal and can run one frame at a time from three running sums (see :meth:`step`). Same
    ``gamma`` / ``beta`` names and ``eps`` as :class:`GlobalLayerNorm`, so a causal model keeps
    the non-causal one's parameter names.
    """

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def _normalise(self, x: torch.Tensor, total: torch.Tensor, power: torch.Tensor,
                   count: torch.Tensor) -> torch.Tensor:
        mean = total / count
        # E[x^2] - E[x]^2 can come out a rounding error below zero on a constant input
        var = (power / count - mean * mean).clamp_min(0.0)
        normed = (x - mean) / torch.sqrt(var + self.eps)
        # per-channel affine on (batch, channels, ..., time): the export runs the TCN on 4-D
        # (batch, channels, 1, time) tensors (dfkd.deploy.rewrite.RunAs2d)
        shape = (-1,) + (1,) * (x.dim() - 2)
        return normed * self.gamma.reshape(shape) + self.beta.reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, [1,] time)
        channels, frames = x.shape[1], x.shape[-1]
        total = torch.cumsum(x.sum(1, keepdim=True), dim=-1)
        power = torch.cumsum((x * x).sum(1, keepdim=True), dim=-1)
        count = torch.arange(1, frames + 1, dtype=x.dtype, device=x.device) * channels
        return self._normalise(x, total, power, count)

    def step(self, x: torch.Tensor, sums: torch.Tensor, frames: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame ``x`` ``(batch, channels, 1)`` given the running ``sums`` ``(batch, 2)``
        (sum and sum of squares over all earlier frames) and ``frames`` (a scalar tensor: frames
        seen so far, this one included): the normalised frame and the updated sums."""
        sums = sums + torch.stack([x.sum((1, 2)), (x * x).sum((1, 2))], dim=1)
        count = frames * x.shape[1]
        return self._normalise(x, sums[:, 0:1, None], sums[:, 1:2, None], count), sums

    def step_frames(self, x: torch.Tensor, sums: torch.Tensor, frames_before: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Several new frames ``x`` ``(batch, channels, frames)`` at once, after ``frames_before``
        (a one-element tensor) earlier ones whose running ``sums`` ``(batch, 2)`` are given: the
        frames as :meth:`forward` on the whole sequence normalises them, and the updated sums."""
        total = sums[:, 0:1, None] + torch.cumsum(x.sum(1, keepdim=True), dim=-1)
        power = sums[:, 1:2, None] + torch.cumsum((x * x).sum(1, keepdim=True), dim=-1)
        steps = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
        count = (frames_before + steps) * x.shape[1]
        return (self._normalise(x, total, power, count),
                torch.cat([total[:, :, -1], power[:, :, -1]], dim=1))


class FreeEncoder(nn.Module):
    """Learned analysis filterbank ("free" in asteroid): conv1d 1 -> N, kernel L, stride S, no bias.

    No padding: ``floor((T - L) / S) + 1`` frames, as asteroid does.
    """

    def __init__(self, n_filters: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, n_filters, kernel_size, stride=stride, bias=False)
        nn.init.xavier_normal_(self.conv.weight)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, N, frames)
        return self.conv(wav.unsqueeze(1))


def overlap_add_decode(frames: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``conv_transpose1d(frames, weight, stride)`` for N -> 1 channel when ``stride`` divides the
    kernel ``L``, as one matmul and ``L / S`` shifted adds: ``(B, N, T) -> (B, (T - 1) S + L)``.

    The same sums as the transposed conv (equal to float rounding), but PyTorch's CPU
    ConvTranspose1d with one output channel is slow, and slower still on every input length it has
    not seen (it sets itself up anew): on files of their own lengths (the teacher cache, scoring,
    enhancing) it was half of a DPTNet forward pass. Measured on one thread: the decoder 4x-7x
    faster, a `small` DPTNet forward 2.25x and Conv-TasNet 1.2x faster on new lengths; training
    steps at a fixed crop length are unchanged (benchmarks/train_step_profile.py).
    """
    n_filters, _, kernel = weight.shape
    hops = kernel // stride
    segments = torch.matmul(frames.transpose(1, 2), weight.reshape(n_filters, kernel))  # (B, T, L)
    batch, n_frames, _ = segments.shape
    segments = segments.reshape(batch, n_frames, hops, stride)
    # segment j of frame t lands on output block t + j
    blocks = sum(F.pad(segments[:, :, j], (0, 0, j, hops - 1 - j)) for j in range(hops))
    return blocks.reshape(batch, (n_frames + hops - 1) * stride)


class FreeDecoder(nn.Module):
    """Learned synthesis filterbank: transposed conv1d N -> 1, kernel L, stride S, no bias (untied).

    The weight stays the ``ConvTranspose1d``'s (same state-dict key and layout); when S divides L
    the forward pass runs it as :func:`overlap_add_decode` (``overlap_add = False`` restores the
    plain transposed conv, kept for the speed benchmark).
    """

    def __init__(self, n_filters: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=stride, bias=False)
        nn.init.xavier_normal_(self.conv.weight)
        self.stride = stride
        self.kernel_divisible = kernel_size % stride == 0
        self.overlap_add = self.kernel_divisible

    def forward(self, frames: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(B, N, frames)`` -> ``(B, T)`` with T the length of ``like`` (zero-padded tail)."""
        if self.overlap_add:
            signal = overlap_add_decode(frames, self.conv.weight, self.stride)
        else:
            signal = self.conv(frames).squeeze(1)
        return fit_length(signal, like, max_shortfall=self.stride)


def fit_length(signal: torch.Tensor, like: torch.Tensor, max_shortfall: int) -> torch.Tensor:
    """Right-pad ``signal`` with zeros / trim it to the last-axis length of ``like``.

    A framed decoder returns ``T - ((T - L) mod S)`` samples, short of ``T`` by less than the hop, so
    padding by a constant ``max_shortfall`` then slicing needs no data-dependent branch (which
    keeps the graph exportable with a dynamic length axis).
    """
    padded = F.pad(signal, (0, max_shortfall))
    return padded[..., : like.shape[-1]]

"""DCCRN-CL: Deep Complex Convolution Recurrent Network, layout of asteroid 0.7.0's ``DCCRNet``.

Hu, Liu, Lv, Xing, Zhang, Fu, Wang, Zhang & Xie, "DCCRN: Deep Complex Convolution Recurrent
Network for Phase-Aware Speech Enhancement", Interspeech 2020 (arXiv 2008.00264).

The network masks a complex STFT (512-point DFT, 400-sample sqrt-Hann frames, hop 100, Nyquist bin
dropped) with a complex U-Net: complex conv encoders (kernel 5 x 2 over frequency x time, stride 2
in frequency, BatchNorm and PReLU on the real and imaginary parts), a two-layer complex LSTM with a
complex Linear in the bottleneck, complex transposed-conv decoders fed ``[decoder, skip]``
concatenations, and the paper's "E" mask ``tanh(|M|) * M / |M|`` multiplied with the spectrum.

As in asteroid (and unlike the paper's causal variant) the time kernels have no padding: each
encoder reads frames ``t`` and ``t + 1`` and each decoder gives the frame back, so the mask at frame
``t`` looks ``len(channels)`` frames ahead (6 frames, 60 ms, for DCCRN-CL). Parameter counts and
outputs equal asteroid's (checked against its fixtures); see ``README.md, "DCCRN (DCCRN-CL)"``.
``causal=True`` (presets ``tiny-causal``, ``micro-causal``) is the paper's causal setting: past-only
time padding, so the only wait is the STFT window (:func:`latency_samples`); such a model
streams one STFT frame at a time with explicit state (:func:`streaming_step`,
:mod:`dfkd.models.dccrn_stream`).
The asteroid checkpoint converters live in :mod:`dfkd.models.dccrn_from_asteroid` and are
re-exported here (``config_from_asteroid``, ``state_dict_from_asteroid``), as the architecture
module contract of :mod:`dfkd.models` asks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import DfkdError
from .complex_layers import (  # the mask helpers live there so dccrn_stream can share them
    MASK_BOUNDS,
    MASK_EPS,  # noqa: F401  re-exported
    ComplexConv2d,
    ComplexConvTranspose2d,
    ComplexLinear,
    ComplexLSTM,
    ComplexPReLU,
    OnReIm,
    bound_mask,
    complex_multiply,
)
from .conv_stft import ConvSTFT, check_stft_sizes
from .layers import check_waveforms
from .dccrn_from_asteroid import (  # noqa: F401  re-exported (dfkd.models contract)
    ASTEROID_ARCHITECTURES,
    config_from_asteroid,
    state_dict_from_asteroid,
)

ARCH = "dccrn"
ASTEROID_CLASS = "DCCRNet"  # asteroid's class name in its checkpoints


def frame_grid(config: Mapping[str, Any]) -> int:
    """Period of the framing in samples (the STFT hop): see :func:`dfkd.models.frame_grid`."""
    return int(config.get("hop_length") or 1)


def latency_samples(config: Mapping[str, Any]) -> int | None:
    """Algorithmic latency of a causal model in samples; ``None`` for a non-causal one.

    The causal network maps STFT frame ``t`` from frames ``<= t`` only, so the only wait is the
    STFT window: output sample ``n`` is overlap-added from frames that end up to ``win - 1``
    samples after it, so it can leave once ``win_length`` samples have arrived (the paper's causal
    DCCRN: 400 / 16 kHz = 25 ms; ``tiny-causal`` / ``micro-causal``: 256 samples, 16 ms).
    """
    if not config.get("causal"):
        return None
    return int(config.get("win_length") or 400)


def _layer_pairs(value: Any, n_layers: int, name: str) -> list[list[int]]:
    """One ``[freq, time]`` pair per encoder level, from a single pair or a per-level list."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    ):
        return [[int(value[0]), int(value[1])] for _ in range(n_layers)]
    pairs = [list(map(int, v)) for v in value]
    if len(pairs) != n_layers or any(len(p) != 2 for p in pairs):
        raise DfkdError(
            f"{name} must be one (freq, time) pair or one pair per encoder level ({n_layers})"
        )
    return pairs


def _layer_ints(value: Any, n_layers: int, name: str) -> list[int]:
    """One int per encoder level, from a single int or a per-level list."""
    if isinstance(value, int):
        return [value] * n_layers
    values = [int(v) for v in value]
    if len(values) != n_layers:
        raise DfkdError(f"{name} must be an int or one int per encoder level ({n_layers})")
    return values


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so ``config`` round-trips through YAML and JSON."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class EncoderBlock(nn.Module):
    """Complex conv (no bias) -> BatchNorm on re/im -> PReLU on re/im.

    Args:
        in_channels: complex input channels.
        out_channels: complex output channels.
        kernel_size: ``(freq, time)`` kernel.
        freq_stride: stride along frequency (time stride is 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int],
        freq_stride: int,
        causal: bool = False,
    ) -> None:
        super().__init__()
        padding = ((kernel_size[0] - 1) // 2, 0)  # "same" in frequency, none in time (non-causal)
        # causal: kt - 1 zero frames on the past side, so frame t reads frames t - kt + 1 .. t
        self.causal_pad = kernel_size[1] - 1 if causal else 0
        self.conv = ComplexConv2d(
            in_channels, out_channels, tuple(kernel_size), (freq_stride, 1), padding
        )
        self.norm = OnReIm(lambda: nn.BatchNorm2d(out_channels))
        self.act = ComplexPReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, C_in, F, T)`` -> ``(B, 2, C_out, F / stride, T - kt + 1)`` (``T`` if causal)."""
        if self.causal_pad:
            x = nn.functional.pad(x, (self.causal_pad, 0))
        return self.act(self.norm(self.conv(x)))


class DecoderBlock(nn.Module):
    """Complex transposed conv (no bias) -> BatchNorm on re/im -> PReLU on re/im.

    Args:
        in_channels: complex input channels (decoder output + skip).
        out_channels: complex output channels.
        kernel_size: ``(freq, time)`` kernel.
        freq_stride: upsampling factor along frequency.
        output_padding: extra frequency rows so the output matches the mirrored encoder's input.
        causal: drop the last ``kt - 1`` output frames, so frame t comes from input frames <= t.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Sequence[int],
        freq_stride: int,
        output_padding: int,
        causal: bool = False,
    ) -> None:
        super().__init__()
        padding = ((kernel_size[0] - 1) // 2, 0)
        self.causal_trim = kernel_size[1] - 1 if causal else 0
        self.conv = ComplexConvTranspose2d(
            in_channels,
            out_channels,
            tuple(kernel_size),
            (freq_stride, 1),
            padding,
            (output_padding, 0),
        )
        self.norm = OnReIm(lambda: nn.BatchNorm2d(out_channels))
        self.act = ComplexPReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, C_in, F, T)`` -> ``(B, 2, C_out, F * stride, T + kt - 1)`` (``T`` if causal)."""
        return self.act(self.norm(_trim_future(self.conv(x), self.causal_trim)))


def _trim_future(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Drop the last ``frames`` time frames of a transposed conv's output (causal decoding)."""
    return x[..., : x.shape[-1] - frames] if frames else x


class LSTMBottleneck(nn.Module):
    """Complex LSTM + complex Linear over the flattened last encoder output (paper Fig. 1, "CL").

    Each frame's ``(channels, freqs)`` map is flattened channel-major to ``channels * freqs``
    features, run through the complex LSTM, projected back with a complex Linear (no norm).

    Args:
        channels: complex channels of the last encoder.
        n_freqs: frequency bins after the last encoder.
        hidden_size: hidden size of each real LSTM.
        num_layers: complex LSTM layers.
    """

    def __init__(self, channels: int, n_freqs: int, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.channels, self.n_freqs = channels, n_freqs
        self.rnn = ComplexLSTM(channels * n_freqs, hidden_size, num_layers)
        self.linear = ComplexLinear(hidden_size, channels * n_freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, C, F, T)`` -> same shape."""
        sequence = x.permute(0, 1, 4, 2, 3).flatten(3)  # (B, 2, T, C * F)
        out = self.linear(self.rnn(sequence))
        return out.unflatten(3, (self.channels, self.n_freqs)).permute(0, 1, 3, 4, 2)


class DCCRN(nn.Module):
    """DCCRN-CL speech enhancer, ``(batch, samples) -> (batch, samples)`` at 16 kHz.

    Hu et al., "DCCRN: Deep Complex Convolution Recurrent Network for Phase-Aware Speech
    Enhancement", Interspeech 2020 (arXiv 2008.00264); layer layout, STFT scaling and mask as in
    asteroid 0.7.0 ``DCCRNet`` (weights load through :func:`state_dict_from_asteroid`).

    Inputs shorter than :attr:`min_length` (one STFT frame per encoder level plus one) are
    zero-padded inside and the output is trimmed back; samples after the last full STFT frame come
    out as exact zeros (asteroid does the same).

    Args:
        n_fft: STFT DFT size; the network sees ``n_fft // 2`` bins (Nyquist dropped).
        win_length: STFT frame length in samples (sqrt-Hann window, centred in the DFT).
        hop_length: STFT hop in samples.
        channels: complex output channels of each encoder level (the decoders mirror them).
        kernel_size: ``(freq, time)`` kernel of every level, or one pair per level; the frequency
            kernel should be odd, the time kernel ``kt`` costs ``kt - 1`` frames of look-ahead.
        freq_stride: frequency stride of every level, or one per level; ``n_fft // 2`` must be
            divisible by their product.
        rnn_hidden: hidden size of each real LSTM in the complex LSTM.
        rnn_layers: number of complex LSTM layers.
        mask_bound: ``"tanh"`` (the paper's "E" mask), ``"sigmoid"`` or ``"none"``.
        causal: the paper's causal setting: time padding on the past side only (encoders pad
            ``kt - 1`` frames before, decoders drop the ``kt - 1`` frames after), so mask frame t
            reads STFT frames <= t (the LSTM is unidirectional either way; same parameters, so
            weights load strictly both ways). Latency: the STFT window (:func:`latency_samples`).
            Stored in ``config`` only when true, so a non-causal model's identity is unchanged.
            (BatchNorm uses batch statistics in training mode; in eval mode the model is causal.)
    """

    ARCH = ARCH
    sample_rate = 16000

    def __init__(
        self,
        *,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 100,
        channels: Sequence[int] = (16, 32, 64, 128, 128, 128),
        kernel_size: Sequence[int] | Sequence[Sequence[int]] = (5, 2),
        freq_stride: int | Sequence[int] = 2,
        rnn_hidden: int = 128,
        rnn_layers: int = 2,
        mask_bound: str = "tanh",
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = _plain(
            dict(
                n_fft=n_fft,
                win_length=win_length,
                hop_length=hop_length,
                channels=channels,
                kernel_size=kernel_size,
                freq_stride=freq_stride,
                rnn_hidden=rnn_hidden,
                rnn_layers=rnn_layers,
                mask_bound=mask_bound,
            )
        )
        if causal:
            self.config["causal"] = True
        self.causal = bool(causal)
        check_stft_sizes(n_fft, win_length, hop_length)
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise DfkdError(f"channels must be a non-empty list of positive ints, got {channels}")
        if rnn_hidden < 1 or rnn_layers < 1:
            raise DfkdError(
                f"rnn_hidden and rnn_layers must be positive, got {rnn_hidden}, {rnn_layers}"
            )
        if mask_bound not in MASK_BOUNDS:
            raise DfkdError(
                f"mask_bound must be one of {', '.join(MASK_BOUNDS)}, got {mask_bound!r}"
            )
        n_levels = len(channels)
        kernels = _layer_pairs(kernel_size, n_levels, "kernel_size")
        strides = _layer_ints(freq_stride, n_levels, "freq_stride")
        if min(min(k) for k in kernels) < 1 or min(strides) < 1:
            raise DfkdError("kernel sizes and strides must be positive")
        self.mask_bound = mask_bound
        self.stft = ConvSTFT(n_fft, win_length, hop_length)

        # Frequency bins at each level; exact division keeps encoder and decoder shapes mirrored.
        n_freqs = [self.stft.n_freqs]
        if n_freqs[0] % math.prod(strides):
            raise DfkdError(
                f"n_fft // 2 = {n_freqs[0]} bins must be divisible by the product of the frequency "
                f"strides ({math.prod(strides)}); change n_fft, freq_stride or the number of levels"
            )
        for level, (kernel, stride) in enumerate(zip(kernels, strides, strict=True)):
            padding = (kernel[0] - 1) // 2
            n_out = (n_freqs[-1] + 2 * padding - kernel[0]) // stride + 1
            if n_out != n_freqs[-1] // stride:
                raise DfkdError(
                    f"level {level}: frequency kernel {kernel[0]} with stride {stride} maps "
                    f"{n_freqs[-1]} bins to {n_out}, not {n_freqs[-1] // stride}; "
                    "use an odd frequency kernel"
                )
            n_freqs.append(n_out)

        ins = [1] + channels[:-1]
        self.encoders = nn.ModuleList(
            EncoderBlock(c_in, c_out, k, s, self.causal)
            for c_in, c_out, k, s in zip(ins, channels, kernels, strides, strict=True)
        )
        self.bottleneck = LSTMBottleneck(channels[-1], n_freqs[-1], rnn_hidden, rnn_layers)
        # Decoder i mirrors encoder L-1-i: reads [previous output, skip] (2 x channels[L-1-i]).
        decoders = []
        for level in range(n_levels - 1, -1, -1):
            padding = (kernels[level][0] - 1) // 2
            natural = (n_freqs[level + 1] - 1) * strides[level] - 2 * padding + kernels[level][0]
            output_padding = n_freqs[level] - natural
            if not 0 <= output_padding < strides[level]:
                raise DfkdError(
                    f"level {level}: frequency kernel {kernels[level][0]} with stride "
                    f"{strides[level]} cannot be mirrored by a transposed conv; "
                    "use an odd frequency kernel"
                )
            c_out = channels[level - 1] if level > 0 else 1
            decoders.append(
                (2 * channels[level], c_out, kernels[level], strides[level], output_padding)
            )
        self.decoders = nn.ModuleList(
            DecoderBlock(*args, causal=self.causal) for args in decoders[:-1]
        )
        c_in, c_out, kernel, stride, output_padding = decoders[-1]
        self.output_layer = ComplexConvTranspose2d(
            c_in,
            c_out,
            tuple(kernel),
            (stride, 1),
            ((kernel[0] - 1) // 2, 0),
            (output_padding, 0),
            bias=True,
        )
        self.output_trim = kernel[1] - 1 if self.causal else 0
        # causal levels keep the frame count, so one STFT frame is enough
        self.min_length = win_length + (
            0 if self.causal else hop_length * sum(k[1] - 1 for k in kernels)
        )

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Enhance ``(batch, samples)`` waveforms; returns the same shape."""
        check_waveforms(noisy, "DCCRN", 1, next(self.parameters()).dtype)
        spec = self.stft(self._pad_to_min_length(noisy))  # (B, 2, F, frames)
        x = spec.unsqueeze(2)  # one complex input channel
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = torch.cat([self.bottleneck(x), x], dim=2)  # [decoder, skip], asteroid's order
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = torch.cat([decoder(x), skip], dim=2)
        raw = _trim_future(self.output_layer(x), self.output_trim)
        mask = bound_mask(raw[:, :, 0], self.mask_bound)
        return self.stft.inverse(complex_multiply(mask, spec), like=noisy)

    def _pad_to_min_length(self, wav: torch.Tensor) -> torch.Tensor:
        # Right-pad with zeros up to min_length, without a Python branch on the length: pad by the
        # constant min_length, then cut at max(T, min_length) (a traced size under ONNX export).
        end = torch.clamp(torch.as_tensor(wav.shape[-1]), min=self.min_length)
        return nn.functional.pad(wav, (0, self.min_length))[..., :end]


MODEL = DCCRN

# Measured with dfkd.models.count_params and dfkd.models.complexity.count_macs (one 1 s input at
# 16 kHz, STFT and inverse included); step = one Adam step (forward + backward) on batch 8 x 2 s.
# | preset  | STFT fft/win/hop | channels             | LSTM  | params    | MACs/s | step CPU-s |
# |---------|------------------|----------------------|-------|-----------|--------|------------|
# | paper   | 512/400/100      | 16,32,64,128,128,128 | 2x128 | 3,669,336 | 8.22 G |     --     |
# | student | 512/400/200      | 8,16,24,32,32,32     | 2x64  |   383,736 | 0.48 G |     --     |
# | small   | 256/256/128      | 8,16,24,48,64        | 2x128 | 1,011,188 | 0.65 G |    0.79    |
# | tiny    | 256/256/128      | 4,8,16,16,32         | 2x32  |   123,236 | 0.14 G |    0.31    |
# | micro   | 256/256/128      | 4,8,8,16,16          | 2x16  |    46,436 | 0.08 G |     --     |
# | nano    | 256/256/128      | 4,4,8,8,16           | 2x8   |    21,956 | 0.05 G |     --     |
# | mini    | 512/400/100      | 2,4                  | 1x8   |    22,272 | 0.09 G |     --     |
# tiny-causal / micro-causal: the sizes of tiny / micro (123,236 / 46,436 params), 143 M / 85.1 M
# MACs/s (no level drops a frame), 16 ms latency (the 256-sample STFT window).
# student / paper: 9.6x fewer params, 17.3x fewer MACs; small / tiny: 8.2x fewer params.
# student hops 200 samples (12.5 ms, 50 % overlap, the sqrt-Hann pair stays perfect-reconstruction)
# where paper hops 100: half the frames. Per-frame costs that do not shrink with the channel count
# (STFT, LSTM steps, concatenations, layout reorders) kept the hop-100 student only 4.2-4.9x faster
# than paper on the 2-core CPU (README.md, "Deployment"); at hop 200 it is ~10x faster.
# "step CPU-s" is process CPU time with 1 thread (the shared 2-core machine ran at load ~8, so wall
# times were not meaningful); 2 threads used 0.87 / 0.34 CPU-s, i.e. ~0.45 / ~0.2 s wall when idle.
# small / tiny use a 16 ms / 8 ms STFT (128 bins, 125 frames/s instead of 256 bins, 157 frames/s):
# 2.5x fewer time-frequency points, which is what keeps the demo teacher under 1 s per step.
_DEMO_STFT = dict(n_fft=256, win_length=256, hop_length=128)  # every demo and study preset

PRESETS: dict[str, dict[str, Any]] = {
    # DCCRN-CL as in the paper and asteroid's "DCCRN-CL".
    "paper": dict(channels=[16, 32, 64, 128, 128, 128], rnn_hidden=128, rnn_layers=2),
    # The paper-scale KD student: paper's window, bins and depth, twice the hop, channels / LSTM
    # narrowed.
    "student": dict(hop_length=200, channels=[8, 16, 24, 32, 32, 32], rnn_hidden=64, rnn_layers=2),
    # Demo teacher / student (same STFT, so they differ in capacity only).
    "small": dict(**_DEMO_STFT, channels=[8, 16, 24, 48, 64], rnn_hidden=128, rnn_layers=2),
    "tiny": dict(**_DEMO_STFT, channels=[4, 8, 16, 16, 32], rnn_hidden=32, rnn_layers=2),
    # Study student: 22x fewer parameters than `small` (the tiny-SE KD range, arXiv 2309.08144).
    "micro": dict(**_DEMO_STFT, channels=[4, 8, 8, 16, 16], rnn_hidden=16, rnn_layers=2),
    # Study student for stronger teachers: 46x fewer parameters than `small` (micro is within
    # 0.4 dB of the DCCRN teachers; the tiny-SE KD range ends at ~60x).
    "nano": dict(**_DEMO_STFT, channels=[4, 4, 8, 8, 16], rnn_hidden=8, rnn_layers=2),
    # Tests: the paper's STFT, two levels, one narrow LSTM layer.
    "mini": dict(channels=[2, 4], rnn_hidden=8, rnn_layers=1),
}
# Causal twins (the paper's causal setting: past-only time padding; the LSTM is unidirectional in
# both): same sizes and parameters, latency = the STFT window (:func:`latency_samples`), 16 ms.
CAUSAL_SUFFIX = "-causal"
PRESETS.update({name + CAUSAL_SUFFIX: dict(PRESETS[name], causal=True)
                for name in ("tiny", "micro")})


def streaming_step(model: DCCRN) -> nn.Module:
    """The one-STFT-frame-at-a-time form of a causal model (:class:`~.dccrn_stream.DCCRNStep`);
    raises :class:`DfkdError` for a non-causal one."""
    from .dccrn_stream import DCCRNStep  # the step module imports this one

    return DCCRNStep(model)

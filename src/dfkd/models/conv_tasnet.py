"""Conv-TasNet for single-channel speech enhancement.

Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for Speech
Separation", IEEE/ACM TASLP 27(8), 2019 (arXiv 1809.07454), with one source (``n_src=1``): a learned
encoder, a temporal convolutional network (TCN) that estimates a mask on the encoder output, and a
learned decoder.

Numerically identical to asteroid 0.7.0's ``ConvTasNet`` (``fb_name="free"``, non-causal, gLN):
asteroid checkpoints load through :func:`state_dict_from_asteroid`, and the ``paper`` preset has
asteroid's default parameter count (4,984,497). The paper's symbols map to our arguments as
N=``n_filters``, L=``kernel_size``, B=``bn_chan``, H=``hid_chan``, Sc=``skip_chan``,
P=``conv_kernel_size``, X=``n_blocks``, R=``n_repeats``.

Deviation kept from asteroid: the last block's residual 1x1 conv is part of the model (so that
asteroid weights load strictly and parameter counts match) although its output can never reach the
mask. We do not compute it, and we freeze it (``requires_grad=False``) so that optimisers and
DistributedDataParallel do not wait for a gradient that never comes.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DfkdError
from .layers import (CumulativeLayerNorm, FreeDecoder, FreeEncoder, GlobalLayerNorm,
                     check_waveforms)

ARCH = "convtasnet"
ASTEROID_CLASS = "ConvTasNet"  # asteroid's class name in its checkpoints


def frame_grid(config: Mapping[str, Any]) -> int:
    """Period of the framing in samples (the encoder stride): see :func:`dfkd.models.frame_grid`."""
    return int(config.get("stride") or 1)


def latency_samples(config: Mapping[str, Any]) -> int | None:
    """Algorithmic latency of a causal model in samples; ``None`` for a non-causal one.

    The causal TCN reads no future frame, so the only wait is the encoder window: output sample
    ``n`` lies in frames that end up to ``L - 1`` samples after it, so it can leave once
    ``L`` samples (one window, i.e. the hop buffered plus ``L - S`` of look-ahead) have arrived.
    """
    if not config.get("causal"):
        return None
    return int(config["kernel_size"])

# Presets. MACs for one second of 16 kHz audio (dfkd.models.complexity.count_macs); step = one
# Adam step (forward + backward) on a batch of 8 x 2 s on the project's 2-core CPU, wall time with
# 2 threads / 1 thread (fastest of 5 steps; the machine was shared with other jobs).
#
# | preset  | N   | L  | B   | H   | Sc  | X | R | params    | MACs/s | step 2t / 1t  | recept. |
# |---------|-----|----|-----|-----|-----|---|---|-----------|--------|---------------|---------|
# | paper   | 512 | 16 | 128 | 512 | 128 | 8 | 3 | 4,984,497 | 9.67 G |               | 0.77 s  |
# | student | 128 | 16 | 64  | 128 | 64  | 8 | 2 |   434,657 | 823 M  |               | 0.51 s  |
# | small   | 128 | 32 | 64  | 128 | 64  | 7 | 2 |   387,037 | 365 M  | 0.69 / 1.20 s | 0.51 s  |
# | tiny    |  64 | 32 | 32  | 64  | 32  | 7 | 1 |    55,919 | 50.4 M | 0.16 / 0.27 s | 0.26 s  |
# | micro   |  32 | 32 | 16  | 32  | 16  | 6 | 1 |    14,333 | 12.3 M |               | 0.13 s  |
# | nano    |  32 | 32 | 16  | 16  | 16  | 6 | 1 |     8,861 | 7.70 M |               | 0.13 s  |
# | mini    |  32 | 16 | 16  | 32  | 16  | 3 | 1 |     7,735 | 12.9 M |               | tests   |
#
# student: the teacher's framing and dilations, 2-4x narrower, one repeat fewer (11.5x fewer
# parameters, 11.8x fewer MACs). small/tiny: L=32 (hop 1 ms) halves the frames of L=16, the main
# lever on CPU training time; the paper finds shorter filters better, a trade made for the demo.
PRESETS: dict[str, dict[str, Any]] = {
    # asteroid 0.7.0's defaults: the paper's best non-causal configuration
    "paper": dict(n_filters=512, kernel_size=16, bn_chan=128, hid_chan=512, skip_chan=128,
                  n_blocks=8, n_repeats=3),
    "student": dict(n_filters=128, kernel_size=16, bn_chan=64, hid_chan=128, skip_chan=64,
                    n_blocks=8, n_repeats=2),
    "small": dict(n_filters=128, kernel_size=32, bn_chan=64, hid_chan=128, skip_chan=64,
                  n_blocks=7, n_repeats=2),
    "tiny": dict(n_filters=64, kernel_size=32, bn_chan=32, hid_chan=64, skip_chan=32,
                 n_blocks=7, n_repeats=1),
    # Study student: 27x fewer parameters than `small`, in the 20x-60x range where tiny-SE KD
    # found its largest gains (Kegler et al., ICASSP 2024, arXiv 2309.08144).
    "micro": dict(n_filters=32, kernel_size=32, bn_chan=16, hid_chan=32, skip_chan=16,
                  n_blocks=6, n_repeats=1),
    # Study student for stronger teachers: micro's depth and receptive field, half its hidden
    # width: 44x fewer parameters than `small` (the upper end of the tiny-SE KD range).
    "nano": dict(n_filters=32, kernel_size=32, bn_chan=16, hid_chan=16, skip_chan=16,
                 n_blocks=6, n_repeats=1),
    "mini": dict(n_filters=32, kernel_size=16, bn_chan=16, hid_chan=32, skip_chan=16,
                 n_blocks=3, n_repeats=1),
}
# Causal twins (the paper's causal configuration: cLN, left-padded depthwise convs): same sizes,
# same parameter names, no look-ahead beyond the encoder window (:func:`latency_samples`).
CAUSAL_SUFFIX = "-causal"
PRESETS.update({name + CAUSAL_SUFFIX: dict(PRESETS[name], causal=True)
                for name in ("student", "tiny", "micro", "mini")})

_MASK_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU}


class TemporalBlock(nn.Module):
    """One 1-D convolutional block of the TCN (Luo & Mesgarani 2019, Fig. 1C).

    1x1 conv B -> H, PReLU, gLN, depthwise conv (kernel P, dilation d, zero "same" padding),
    PReLU, gLN, then a residual 1x1 conv H -> B and a skip 1x1 conv H -> Sc.

    Args:
        bn_chan: B, channels of the residual stream.
        hid_chan: H, channels inside the block.
        skip_chan: Sc, channels of the skip output; 0 for no skip path (the mask then reads the
            residual stream, as in asteroid with ``skip_chan=None``).
        conv_kernel_size: P, kernel of the depthwise conv.
        dilation: d of the depthwise conv.
        causal: cLN instead of gLN, and the depthwise conv padded with ``(P - 1) d`` zeros on the
            past side only (Luo & Mesgarani 2019, Sec. III-C), so no output frame reads a later
            input frame.
    """

    def __init__(
        self, bn_chan: int, hid_chan: int, skip_chan: int, conv_kernel_size: int, dilation: int,
        causal: bool = False,
    ) -> None:
        super().__init__()
        norm = CumulativeLayerNorm if causal else GlobalLayerNorm
        self.causal_pad = (conv_kernel_size - 1) * dilation if causal else 0
        self.in_conv = nn.Conv1d(bn_chan, hid_chan, 1)
        self.in_act = nn.PReLU()
        self.in_norm = norm(hid_chan)
        self.dw_conv = nn.Conv1d(
            hid_chan,
            hid_chan,
            conv_kernel_size,
            padding=0 if causal else (conv_kernel_size - 1) * dilation // 2,
            dilation=dilation,
            groups=hid_chan,
        )
        self.dw_act = nn.PReLU()
        self.dw_norm = norm(hid_chan)
        self.res_conv = nn.Conv1d(hid_chan, bn_chan, 1)
        self.skip_conv = nn.Conv1d(hid_chan, skip_chan, 1) if skip_chan else None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The shared part of the block, ``(batch, B, frames) -> (batch, H, frames)``."""
        x = self.in_norm(self.in_act(self.in_conv(x)))
        if self.causal_pad:
            x = F.pad(x, (self.causal_pad, 0))
        return self.dw_norm(self.dw_act(self.dw_conv(x)))


class TCNMasker(nn.Module):
    """The separation module: gLN, bottleneck, X x R temporal blocks, mask head.

    Args:
        n_filters: N, channels of the encoder output (and of the mask).
        bn_chan, hid_chan, skip_chan, conv_kernel_size: see :class:`TemporalBlock`.
        n_blocks: X, blocks per repeat, with dilations 1, 2, ..., 2**(X-1).
        n_repeats: R, repeats of the X blocks.
        mask_act: ``"sigmoid"`` (the paper's choice) or ``"relu"``.
        causal: cLN and past-only padding throughout (see :class:`TemporalBlock`).
    """

    def __init__(
        self,
        n_filters: int,
        bn_chan: int,
        hid_chan: int,
        skip_chan: int,
        conv_kernel_size: int,
        n_blocks: int,
        n_repeats: int,
        mask_act: str,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.in_norm = CumulativeLayerNorm(n_filters) if causal else GlobalLayerNorm(n_filters)
        self.bottleneck = nn.Conv1d(n_filters, bn_chan, 1)
        self.blocks = nn.ModuleList(
            TemporalBlock(bn_chan, hid_chan, skip_chan, conv_kernel_size, 2**b, causal)
            for _ in range(n_repeats)
            for b in range(n_blocks)
        )
        self.use_skip = bool(skip_chan)
        if self.use_skip:
            # Its output would only feed a residual stream that nothing reads (see module doc).
            self.blocks[-1].res_conv.requires_grad_(False)
        self.out_act = nn.PReLU()
        self.mask_conv = nn.Conv1d(skip_chan or bn_chan, n_filters, 1)
        self.mask_act = _MASK_ACTIVATIONS[mask_act]()

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        """``(batch, N, frames)`` -> mask ``(batch, N, frames)``."""
        stream = self.bottleneck(self.in_norm(encoded))
        skip_sum = torch.zeros((), dtype=stream.dtype, device=stream.device)
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            hidden = block.hidden(stream)
            if self.use_skip:
                skip_sum = skip_sum + block.skip_conv(hidden)
                if index == last:
                    break
            stream = stream + block.res_conv(hidden)
        head_input = skip_sum if self.use_skip else stream
        return self.mask_act(self.mask_conv(self.out_act(head_input)))


class ConvTasNet(nn.Module):
    """Conv-TasNet (Luo & Mesgarani 2019, arXiv 1809.07454) as a one-source enhancer.

    ``forward`` maps a noisy waveform ``(batch, samples)`` to the enhanced waveform of the same
    shape. The encoder has no padding, so the samples after the last full frame
    (``(samples - kernel_size) % stride`` of them) come out as exact zeros, as in asteroid.
    Inputs must hold at least ``kernel_size`` samples.

    Args:
        n_filters: N, encoder/decoder filters.
        kernel_size: L, filter length in samples.
        stride: encoder hop in samples; ``None`` means ``kernel_size // 2`` (the paper's 50 %).
        bn_chan: B, bottleneck (residual stream) channels.
        hid_chan: H, channels inside each block.
        skip_chan: Sc, skip-connection channels (0: no skip path).
        conv_kernel_size: P, depthwise kernel size.
        n_blocks: X, blocks per repeat.
        n_repeats: R, repeats.
        mask_act: ``"sigmoid"`` or ``"relu"``.
        encoder_activation: ``None`` (asteroid's default for Conv-TasNet) or ``"relu"``.
        causal: the paper's causal configuration (cLN, past-only depthwise padding): output
            sample ``n`` depends on input samples up to the end of the encoder frames holding it,
            ``< n + L``. Stored in ``config`` only when true, so the identity of every
            non-causal model (checkpoint configs, ONNX metadata) is what it was before the
            option existed. :mod:`dfkd.models.conv_tasnet_stream` runs it frame by frame.
    """

    ARCH = ARCH
    sample_rate = 16000

    def __init__(
        self,
        *,
        n_filters: int = 512,
        kernel_size: int = 16,
        stride: int | None = None,
        bn_chan: int = 128,
        hid_chan: int = 512,
        skip_chan: int = 128,
        conv_kernel_size: int = 3,
        n_blocks: int = 8,
        n_repeats: int = 3,
        mask_act: str = "sigmoid",
        encoder_activation: str | None = None,
        causal: bool = False,
    ) -> None:
        super().__init__()
        stride = kernel_size // 2 if stride is None else stride
        if mask_act not in _MASK_ACTIVATIONS:
            raise DfkdError(
                f"convtasnet: mask_act {mask_act!r} is not supported; "
                f"choose one of {', '.join(_MASK_ACTIVATIONS)}"
            )
        if encoder_activation not in (None, "relu"):
            raise DfkdError(
                f"convtasnet: encoder_activation {encoder_activation!r} is not supported; "
                "use None or 'relu'"
            )
        if conv_kernel_size % 2 == 0:
            # An even kernel cannot be centred: asteroid's padding then shortens every block.
            raise DfkdError(f"convtasnet: conv_kernel_size must be odd, got {conv_kernel_size}")
        self.config: dict[str, Any] = dict(
            n_filters=n_filters, kernel_size=kernel_size, stride=stride, bn_chan=bn_chan,
            hid_chan=hid_chan, skip_chan=skip_chan, conv_kernel_size=conv_kernel_size,
            n_blocks=n_blocks, n_repeats=n_repeats, mask_act=mask_act,
            encoder_activation=encoder_activation,
        )
        if causal:
            self.config["causal"] = True
        self.causal = bool(causal)
        self.encoder = FreeEncoder(n_filters, kernel_size, stride)
        self.encoder_act = nn.ReLU() if encoder_activation == "relu" else nn.Identity()
        self.masker = TCNMasker(
            n_filters, bn_chan, hid_chan, skip_chan, conv_kernel_size, n_blocks, n_repeats, mask_act,
            causal,
        )
        self.decoder = FreeDecoder(n_filters, kernel_size, stride)

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Enhance ``(batch, samples)`` float waveforms -> the same shape."""
        check_waveforms(noisy, "Conv-TasNet", self.encoder.conv.kernel_size[0],
                        self.encoder.conv.weight.dtype)
        encoded = self.encoder_act(self.encoder(noisy))
        return self.decoder(encoded * self.masker(encoded), like=noisy)


MODEL = ConvTasNet


def streaming_step(model: ConvTasNet) -> nn.Module:
    """The one-hop-at-a-time form of a causal model (:class:`~.conv_tasnet_stream.ConvTasNetStep`)."""
    from .conv_tasnet_stream import ConvTasNetStep  # the step module imports this one

    return ConvTasNetStep(model)

# asteroid key -> ours, applied in order (first match wins)
_ASTEROID_KEYS: tuple[tuple[str, str], ...] = (
    (r"^encoder\.filterbank\._filters$", "encoder.conv.weight"),
    (r"^decoder\.filterbank\._filters$", "decoder.conv.weight"),
    (r"^masker\.bottleneck\.0\.", "masker.in_norm."),
    (r"^masker\.bottleneck\.1\.", "masker.bottleneck."),
    (r"^masker\.TCN\.(\d+)\.shared_block\.0\.", r"masker.blocks.\1.in_conv."),
    (r"^masker\.TCN\.(\d+)\.shared_block\.1\.", r"masker.blocks.\1.in_act."),
    (r"^masker\.TCN\.(\d+)\.shared_block\.2\.", r"masker.blocks.\1.in_norm."),
    (r"^masker\.TCN\.(\d+)\.shared_block\.3\.", r"masker.blocks.\1.dw_conv."),
    (r"^masker\.TCN\.(\d+)\.shared_block\.4\.", r"masker.blocks.\1.dw_act."),
    (r"^masker\.TCN\.(\d+)\.shared_block\.5\.", r"masker.blocks.\1.dw_norm."),
    (r"^masker\.TCN\.(\d+)\.(res_conv|skip_conv)\.", r"masker.blocks.\1.\2."),
    (r"^masker\.mask_net\.0\.", "masker.out_act."),
    (r"^masker\.mask_net\.1\.", "masker.mask_conv."),
)


def config_from_asteroid(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """Our constructor kwargs from asteroid ``ConvTasNet``'s ``model_args``.

    Raises :class:`DfkdError` for settings this implementation does not reproduce (another
    filterbank, several sources, causal mode, a norm other than gLN, another sample rate).
    """
    args = dict(model_args)
    n_filters = int(args.get("n_filters", 512))
    checks = {
        "fb_name": (str(args.get("fb_name", "free")).lower() in ("free", "freefb"), "'free'"),
        "n_src": (int(args.get("n_src", 1)) == 1, "1 (enhancement)"),
        "causal": (not args.get("causal", False), "False"),
        "norm_type": (args.get("norm_type", "gLN") == "gLN", "'gLN'"),
        "sample_rate": (float(args.get("sample_rate", 16000)) == 16000, "16000"),
        "in_chan": (int(args.get("in_chan") or n_filters) == n_filters, "n_filters"),
        "out_chan": (int(args.get("out_chan") or n_filters) == n_filters, "n_filters"),
    }
    for key, (ok, wanted) in checks.items():
        if not ok:
            raise DfkdError(
                f"asteroid ConvTasNet with {key}={args.get(key)!r} is not supported "
                f"(dfkd's Conv-TasNet needs {key}={wanted})"
            )
    return dict(
        n_filters=n_filters,
        kernel_size=int(args.get("kernel_size", 16)),
        stride=int(args.get("stride") or int(args.get("kernel_size", 16)) // 2),
        bn_chan=int(args.get("bn_chan", 128)),
        hid_chan=int(args.get("hid_chan", 512)),
        skip_chan=int(args.get("skip_chan") or 0),
        conv_kernel_size=int(args.get("conv_kernel_size", 3)),
        n_blocks=int(args.get("n_blocks", 8)),
        n_repeats=int(args.get("n_repeats", 3)),
        mask_act=str(args.get("mask_act", "sigmoid")),
        encoder_activation=args.get("encoder_activation"),
    )


def state_dict_from_asteroid(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename asteroid ``ConvTasNet`` state-dict keys to ours (values untouched)."""
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, replacement in _ASTEROID_KEYS:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                renamed[new_key] = value
                break
        else:
            raise DfkdError(f"asteroid ConvTasNet checkpoint has an unexpected key {key!r}")
    return renamed

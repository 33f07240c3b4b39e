"""Loading asteroid 0.7.0 ``DCCRNet`` checkpoints into :class:`dfkd.models.dccrn.DCCRN`.

DCCRN-CL is Hu, Liu, Lv, Xing, Zhang, Fu, Wang, Zhang & Xie, "DCCRN: Deep Complex Convolution
Recurrent Network for Phase-Aware Speech Enhancement", Interspeech 2020 (arXiv 2008.00264); our
layer layout follows asteroid's ``DCCRNet``, so its checkpoints load by renaming keys.

:func:`config_from_asteroid` turns asteroid's ``model_args`` into our constructor kwargs and
:func:`state_dict_from_asteroid` renames asteroid's state-dict keys to ours (the STFT buffers are
checked against the sqrt-Hann basis that :class:`~dfkd.models.conv_stft.ConvSTFT` recomputes, then
dropped). Both are re-exported by :mod:`dfkd.models.dccrn`, the architecture module that
:func:`dfkd.models.from_asteroid` uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import DfkdError
from .conv_stft import sqrt_hann, stft_basis

# asteroid's named DCCRMaskNet architectures, as complex encoder channels (decoders mirror them).
ASTEROID_ARCHITECTURES: dict[str, list[int]] = {
    "DCCRN-CL": [16, 32, 64, 128, 128, 128],
    "mini": [4, 8],
}
_ASTEROID_BOUNDS = {
    "tanh": "tanh",
    "BDT": "tanh",
    "sigmoid": "sigmoid",
    "BDSS": "sigmoid",
    None: "none",
    "UBD": "none",
}


def config_from_asteroid(model_args: Mapping[str, Any]) -> dict[str, Any]:
    """Our constructor kwargs for an asteroid ``DCCRNet`` ``model_args`` dict.

    asteroid fixes the rest: kernel (5, 2), frequency stride 2, complex LSTM 2 x 128.

    Args:
        model_args: asteroid's ``get_model_args()`` (``architecture``, ``stft_n_filters``,
            ``stft_kernel_size``, ``stft_stride``, ``sample_rate``, ``n_src``, ``n_freqs``, and
            optionally ``masknet_kwargs``).
    """
    args = dict(model_args)
    architecture = args.get("architecture")
    if architecture not in ASTEROID_ARCHITECTURES:
        raise DfkdError(
            f"asteroid DCCRNet architecture {architecture!r} is not supported; "
            f"supported: {', '.join(ASTEROID_ARCHITECTURES)}"
        )
    if int(args.get("n_src", 1)) != 1:
        raise DfkdError(
            f"only single-output enhancement is supported (asteroid n_src={args['n_src']})"
        )
    if float(args.get("sample_rate", 16000)) != 16000:
        raise DfkdError(
            f"dfkd models run at 16 kHz; this asteroid model is for {args['sample_rate']} Hz"
        )
    win_length = int(args.get("stft_kernel_size", 512))
    n_fft = int(args.get("stft_n_filters") or win_length)
    stride = args.get("stft_stride")
    hop_length = int(stride) if stride else win_length // 2  # asteroid's Filterbank default
    masknet = dict(args.get("masknet_kwargs") or {})
    bound = masknet.pop("mask_bound", "tanh")
    n_freqs = masknet.pop("n_freqs", args.get("n_freqs", n_fft // 2))
    if masknet:
        raise DfkdError(
            f"unsupported asteroid DCCRNet masknet_kwargs: {', '.join(sorted(masknet))}"
        )
    if bound not in _ASTEROID_BOUNDS:
        raise DfkdError(f"unsupported asteroid mask_bound {bound!r}")
    if int(n_freqs) != n_fft // 2:
        raise DfkdError(
            f"asteroid n_freqs={n_freqs} differs from stft_n_filters // 2 = {n_fft // 2}"
        )
    return dict(
        n_fft=n_fft,
        win_length=win_length,
        hop_length=hop_length,
        channels=list(ASTEROID_ARCHITECTURES[architecture]),
        kernel_size=[5, 2],
        freq_stride=2,
        rnn_hidden=128,
        rnn_layers=2,
        mask_bound=_ASTEROID_BOUNDS[bound],
    )


# asteroid key patterns -> ours. ``{part}`` is re / im (asteroid's re_module / im_module).
_KEY_RULES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"masker\.encoders\.\d+\.rnn\.rnns\.(\d+)\.(re|im)_module\.rnn\.(\w+)$"),
        r"bottleneck.rnn.layers.\1.\2.\3",
    ),
    (
        re.compile(r"masker\.encoders\.\d+\.linear\.(re|im)_module\.(\w+)$"),
        r"bottleneck.linear.\1.\2",
    ),
    (
        re.compile(r"masker\.encoders\.(\d+)\.conv\.(re|im)_module\.(\w+)$"),
        r"encoders.\1.conv.\2.\3",
    ),
    (
        re.compile(r"masker\.encoders\.(\d+)\.norm\.(re|im)_module\.(\w+)$"),
        r"encoders.\1.norm.\2.\3",
    ),
    (
        re.compile(r"masker\.encoders\.(\d+)\.activation\.(re|im)_module\.(\w+)$"),
        r"encoders.\1.act.\2.\3",
    ),
    (re.compile(r"masker\.output_layer\.0\.(re|im)_module\.(\w+)$"), r"output_layer.\1.\2"),
]
_DECODER_KEY = re.compile(
    r"masker\.decoders\.(\d+)\.(deconv|norm|activation)\.(re|im)_module\.(\w+)$"
)
_STFT_KEYS = re.compile(r"(encoder|decoder)\.filterbank\.(_filters|torch_window)$")


def state_dict_from_asteroid(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an asteroid ``DCCRNet`` state dict to ours.

    The STFT filter and window buffers are not part of our state dict (they follow from the STFT
    sizes): they are checked to be the standard sqrt-Hann STFT basis and dropped. asteroid's
    decoder ``k`` (``k >= 1``; decoder 0 is an Identity) is our ``decoders[k - 1]``.

    Args:
        state_dict: asteroid's ``model.state_dict()`` (or a checkpoint's ``state_dict``).
    """
    ours: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if _STFT_KEYS.match(key):
            _check_stft_buffer(key, value)
            continue
        match = _DECODER_KEY.match(key)
        if match:
            index, layer, part, name = match.groups()
            layer = {"deconv": "conv", "activation": "act"}.get(layer, layer)
            ours[f"decoders.{int(index) - 1}.{layer}.{part}.{name}"] = value
            continue
        for pattern, replacement in _KEY_RULES:
            if pattern.match(key):
                ours[pattern.sub(replacement, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise DfkdError(f"unexpected keys in asteroid DCCRNet state dict: {', '.join(unknown[:5])}")
    return ours


def _check_stft_buffer(key: str, value: torch.Tensor) -> None:
    """Raise unless an asteroid STFT buffer is the standard one our ConvSTFT recomputes."""
    if key.endswith("torch_window"):
        expected = torch.from_numpy(sqrt_hann(value.shape[-1])).float()
    else:
        if value.dim() != 3 or value.shape[0] % 2 or value.shape[1] != 1:
            raise DfkdError(f"{key}: unexpected STFT filter shape {tuple(value.shape)}")
        n_fft, win_length = value.shape[0] - 2, value.shape[-1]
        # The basis scales as sqrt(hop): recover the hop from the norm, then compare exactly.
        unit = stft_basis(n_fft, win_length, 1).double()
        hop = round((value.double().norm() / unit.norm()).item() ** 2)
        if not 0 < hop <= win_length:
            raise DfkdError(f"{key}: not an STFT filterbank this converter recognises")
        expected = stft_basis(n_fft, win_length, hop)
    if value.shape != expected.shape or not torch.allclose(
        value.float(), expected, rtol=1e-6, atol=1e-7
    ):
        raise DfkdError(f"{key}: STFT buffer differs from the sqrt-Hann STFT that dfkd recomputes")

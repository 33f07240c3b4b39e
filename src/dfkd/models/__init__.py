"""Model registry: architecture name + preset -> ``nn.Module``.

Architectures (single-channel enhancement at 16 kHz, ``(batch, samples) -> (batch, samples)``):

- ``dccrn``: DCCRN-CL, Hu et al., "DCCRN: Deep Complex Convolution Recurrent Network for
  Phase-Aware Speech Enhancement", Interspeech 2020 (arXiv 2008.00264).
- ``convtasnet``: Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking
  for Speech Separation", IEEE/ACM TASLP 2019 (arXiv 1809.07454).
- ``dptnet``: Chen, Mao & Liu, "Dual-Path Transformer Network: Direct Context-Aware Modeling for
  End-to-End Monaural Speech Separation", Interspeech 2020 (arXiv 2007.13975).

Presets: ``paper`` (full-size teacher, parameter count equal to asteroid 0.7.0), ``student``
(compressed student of ``paper``), ``small`` / ``tiny`` (demo teacher / student), ``micro`` (the study's student, 20x-30x
fewer parameters than ``small``), ``nano`` (its further-compressed twin, 40x-50x, for teachers
that ``micro`` comes too close to), ``mini`` (tests); Conv-TasNet also has the causal twins
``student-causal``, ``tiny-causal``, ``micro-causal`` and ``mini-causal`` (:data:`CAUSAL_PRESETS`),
DCCRN ``tiny-causal`` and ``micro-causal``, DPTNet ``tiny-causal`` and ``micro-causal`` (a
bounded look-ahead of one chunk, 34 ms).

A new architecture is one module plus one entry in :data:`_MODULES` (the only registry table).
The module defines ``ARCH`` (its name), ``PRESETS`` (preset -> constructor kwargs), ``MODEL`` (the
class, built as ``MODEL(**kwargs)``, keeping those kwargs in ``model.config``), ``ASTEROID_CLASS``
(asteroid's class name), ``config_from_asteroid(model_args) -> kwargs`` and
``state_dict_from_asteroid(state_dict) -> state_dict`` (the key-name converter for asteroid
checkpoints), and ``frame_grid(config) -> int`` (the period of its framing, which
:mod:`dfkd.deploy` aligns chunks with). Export needs nothing: :mod:`dfkd.deploy.rewrite` speeds up
known layers wherever they occur and leaves every other layer as it is.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Mapping

from torch import nn

from ..errors import DfkdError

# The registry: architecture name -> its module in this package.
_MODULES = {"dccrn": "dccrn", "convtasnet": "conv_tasnet", "dptnet": "dptnet"}
ARCHITECTURES: tuple[str, ...] = tuple(_MODULES)
PRESETS: tuple[str, ...] = ("paper", "student", "small", "tiny", "micro", "nano", "mini")
# Causal students (past-only padding; Conv-TasNet's also use cLN and stream, :func:`streaming_step`);
# only for the architectures whose module defines them (Conv-TasNet: all four; DCCRN and DPTNet:
# tiny-causal, micro-causal; DPTNet's look one chunk ahead), so not in every architecture's table.
CAUSAL_PRESETS: tuple[str, ...] = ("student-causal", "tiny-causal", "micro-causal", "mini-causal")


def arch_module(arch: str) -> ModuleType:
    """Return the module implementing ``arch`` (raises a clear error for unknown names)."""
    if arch not in _MODULES:
        raise DfkdError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[arch]}")


def preset_config(arch: str, preset: str) -> dict[str, Any]:
    """Constructor kwargs of a preset (a copy, safe to modify)."""
    module = arch_module(arch)
    if preset not in module.PRESETS:
        raise DfkdError(
            f"unknown preset {preset!r} for {arch}; choose one of {', '.join(module.PRESETS)}"
        )
    return dict(module.PRESETS[preset])


def build(arch: str, preset: str = "small", **overrides: Any) -> nn.Module:
    """Build ``arch`` with a preset's configuration, any key overridable (e.g. ``ff_hid=256``)."""
    config = preset_config(arch, preset)
    module = arch_module(arch)
    unknown = set(overrides) - set(_constructor_keys(module))
    if unknown:
        raise DfkdError(f"unknown option(s) for {arch}: {', '.join(sorted(unknown))}")
    config.update(overrides)
    return module.MODEL(**config)


def build_from_config(arch: str, config: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from the ``config`` dict it carries (as stored in checkpoints)."""
    return arch_module(arch).MODEL(**dict(config))


def _constructor_keys(module: ModuleType) -> list[str]:
    import inspect

    return [
        name
        for name, p in inspect.signature(module.MODEL.__init__).parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def asteroid_arch(checkpoint: Mapping[str, Any]) -> str:
    """Which of our architectures an asteroid checkpoint dict holds."""
    name = str(checkpoint.get("model_class") or checkpoint.get("model_name") or "")
    short = name.rsplit(".", 1)[-1]
    # asteroid class name (checkpoints' `model_name` / fixtures' `model_class`) -> our architecture
    classes = {arch_module(arch).ASTEROID_CLASS: arch for arch in _MODULES}
    if short not in classes:
        raise DfkdError(
            f"not an asteroid checkpoint of a supported model (model class {name!r}); "
            f"supported: {', '.join(classes)}"
        )
    return classes[short]


def from_asteroid(checkpoint: Mapping[str, Any]) -> nn.Module:
    """Build our model from an asteroid checkpoint dict (``model_args`` + ``state_dict``).

    Accepts the fixtures' layout (``model_class``, ``model_args``, ``state_dict``) and asteroid's
    published-model layout (``model_name``, ``model_args``, ``state_dict``). Weights are loaded
    strictly through the architecture's key-name converter.
    """
    for key in ("model_args", "state_dict"):
        if key not in checkpoint:
            raise DfkdError(f"asteroid checkpoint has no {key!r} entry")
    arch = asteroid_arch(checkpoint)
    module = arch_module(arch)
    model = module.MODEL(**module.config_from_asteroid(dict(checkpoint["model_args"])))
    state = module.state_dict_from_asteroid(checkpoint["state_dict"])
    model.load_state_dict(state, strict=True)
    return model.eval()


def frame_grid(arch: str, config: Mapping[str, Any]) -> int:
    """Period, in samples, of a model's framing, from its architecture and constructor config.

    The encoder stride (Conv-TasNet, DPTNet) or STFT hop (DCCRN), times DPTNet's segment hop in
    frames: shifting the input by a multiple of this leaves every frame and segment boundary where
    it was. 1 for an architecture this registry does not know.
    """
    return int(arch_module(arch).frame_grid(config)) if arch in _MODULES else 1


def latency_ms(arch: str, config: Mapping[str, Any], sample_rate: int = 16000) -> float | None:
    """Algorithmic latency of a causal model in ms (the architecture's arithmetic: encoder
    window, STFT window, look-ahead), from its module's ``latency_samples(config)``; ``None``
    for a non-causal model, which needs the whole input before its first output sample."""
    module = arch_module(arch)
    samples = module.latency_samples(config) if hasattr(module, "latency_samples") else None
    return None if samples is None else 1000.0 * samples / sample_rate


def streaming_step(model: nn.Module) -> nn.Module:
    """The model's one-hop-at-a-time form, ``(hop, *state) -> (enhanced hop, *state)``, with
    ``hop``, ``delay``, ``warmup_hops``, ``state_names`` and ``initial_state(batch)``; raises a
    :class:`DfkdError` for an architecture or a model that cannot stream (non-causal)."""
    arch = str(getattr(model, "ARCH", type(model).__name__))
    module = arch_module(arch) if arch in _MODULES else None
    if module is None or not hasattr(module, "streaming_step"):
        raise DfkdError(f"{arch}: no streaming form yet (causal presets stream: convtasnet "
                        "*-causal, dccrn and dptnet tiny-causal / micro-causal)")
    return module.streaming_step(model)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (buffers excluded); ``trainable_only``: only those with
    ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)

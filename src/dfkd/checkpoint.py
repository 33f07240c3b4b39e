"""Checkpoints: the format, resolving a run folder, and loading a model from any checkpoint a user may hand us.

A dfkd checkpoint is a dict with ``format="dfkd"``, ``arch``, ``config`` (constructor kwargs),
``state_dict`` and optional training state. asteroid checkpoints (``model_args`` + ``state_dict``)
load through :func:`dfkd.models.from_asteroid`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import DfkdError
from .files import atomic_write

FORMAT = "dfkd"


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write a checkpoint atomically (temp file + rename)."""
    atomic_write(path, lambda tmp: torch.save(dict(payload), tmp))


def model_payload(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The part of a checkpoint that rebuilds ``model``: format, arch, config and weights."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    return {
        "format": FORMAT,
        "arch": model.ARCH,
        "config": dict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file with clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise DfkdError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for truncated/corrupt files
        raise DfkdError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict):
        raise DfkdError(f"{path}: not a checkpoint (expected a dict, found {type(data).__name__})")
    return data


def model_from_checkpoint_dict(data: Mapping[str, Any], source: str = "checkpoint") -> nn.Module:
    """Rebuild a model (eval mode) from a dfkd or asteroid checkpoint dict."""
    from . import models

    if data.get("format") == FORMAT:
        for key in ("arch", "config", "state_dict"):
            if key not in data:
                raise DfkdError(f"{source}: dfkd checkpoint without its {key!r} entry")
        try:
            model = models.build_from_config(data["arch"], data["config"])
        except DfkdError as err:
            raise DfkdError(f"{source}: {err}") from err
        except (KeyError, TypeError, ValueError) as err:  # a config the architecture rejects
            raise DfkdError(f"{source}: the header's config does not build a {data['arch']} "
                            f"({type(err).__name__}: {_first_line(err)})") from err
        load_weights(model, data["state_dict"], source, f"a {data['arch']}")
        return model.eval()
    if "model_args" in data and "state_dict" in data:
        try:
            return models.from_asteroid(data)
        except (RuntimeError, KeyError, TypeError, ValueError) as err:
            raise DfkdError(f"{source}: the asteroid checkpoint's weights do not fit its "
                            f"model_args ({type(err).__name__}: {_first_line(err)})") from err
    raise DfkdError(f"{source}: neither a dfkd checkpoint nor an asteroid checkpoint")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else ""


def weight_mismatch(model: nn.Module, state: Mapping[str, Any]) -> str | None:
    """One line saying how ``state`` disagrees with ``model``'s tensors, or None if it fits."""
    want = model.state_dict()
    if not isinstance(state, Mapping):
        return f"the weights are a {type(state).__name__}, not a state_dict"
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shaped = [k for k in want if k in state and tuple(getattr(state[k], "shape", ())) != tuple(want[k].shape)]
    parts = []
    if shaped:
        k = shaped[0]
        parts.append(f"{len(shaped)} tensor(s) of another shape (e.g. {k}: "
                     f"{tuple(getattr(state[k], 'shape', ()))} in the file, {tuple(want[k].shape)} expected)")
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    return "; ".join(parts) or None


def load_weights(model: nn.Module, state: Mapping[str, Any], source: str, what: str) -> None:
    """``model.load_state_dict(state)``, strictly; a mismatch is a one-line :class:`DfkdError`
    naming ``source`` (the header says one architecture, the weights are another's)."""
    problem = weight_mismatch(model, state)
    if problem is None:
        try:
            model.load_state_dict(state, strict=True)
            return
        except (RuntimeError, TypeError) as err:
            problem = _first_line(err)
    raise DfkdError(f"{source}: the weights do not fit {what} as its header says ({problem})")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder's ``best.pt`` (else ``last.pt``)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise DfkdError(f"{path}: run folder holds neither best.pt nor last.pt")
    if not path.exists():
        raise DfkdError(f"{path}: checkpoint not found")
    return path


def load_model(path: str | os.PathLike) -> nn.Module:
    """Load a model from a checkpoint file (a run folder resolves to its ``best.pt``)."""
    path = resolve_checkpoint(path)
    return model_from_checkpoint_dict(read_checkpoint(path), source=str(path))

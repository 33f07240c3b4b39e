"""The committed demo teachers by name: ``"convtasnet-small"`` -> ``pretrained/convtasnet_small.pt``.

The teachers are committed in the source repository's ``pretrained/`` folder (design.md; each
<= 5 MB, with its recipe, logs and test scores beside it), not inside the Python package, so they
need no network. They are looked up, in order, in

1. ``$DFKD_PRETRAINED`` (a folder holding ``<arch>_<preset>.pt`` files), when set;
2. the ``pretrained/`` folder of the source checkout this package runs from (an editable install
   or ``PYTHONPATH=src``);
3. ``./pretrained`` in the working directory.

An installed wheel has no checkout above it; asking for a teacher by name then fails with a message
saying where to get the files and how to point at them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DfkdError

ENV_VAR = "DFKD_PRETRAINED"
_FILE = re.compile(r"^([a-z0-9]+)_([a-z0-9]+)\.pt$")


@dataclass(frozen=True)
class PretrainedModel:
    """One committed model.

    Attributes:
        name: what :func:`dfkd.load` takes, ``<arch>-<preset>`` (e.g. ``"convtasnet-small"``).
        arch: architecture name.
        preset: preset name.
        path: the checkpoint file.
        test_si_snri: mean SI-SNR improvement on the demo test split (dB), when recorded.
        test_pesq_wb: mean wide-band PESQ there, when recorded.
    """

    name: str
    arch: str
    preset: str
    path: Path
    test_si_snri: float | None = None
    test_pesq_wb: float | None = None


def search_folders() -> list[Path]:
    """The folders searched for committed models, in order (see the module docstring)."""
    folders = []
    if os.environ.get(ENV_VAR):
        folders.append(Path(os.environ[ENV_VAR]).expanduser())
    checkout = Path(__file__).resolve().parents[2] / "pretrained"  # src/dfkd/ -> repo root
    folders += [checkout, Path.cwd() / "pretrained"]
    unique: list[Path] = []
    for folder in folders:
        if folder.resolve() not in [f.resolve() for f in unique]:
            unique.append(folder)
    return unique


def _scores(path: Path) -> tuple[float | None, float | None]:
    summary = path.with_suffix("") / "test" / "summary.json"
    try:
        metrics = json.loads(summary.read_text())["metrics"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None

    def mean(key: str) -> float | None:
        value = metrics.get(key, {})
        return float(value["mean"]) if isinstance(value, dict) and "mean" in value else None

    return mean("si_snri"), mean("pesq_wb")


def pretrained_models() -> list[PretrainedModel]:
    """Every committed model found (the first folder holding a name wins), sorted by name."""
    found: dict[str, PretrainedModel] = {}
    for folder in search_folders():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.pt")):
            match = _FILE.match(path.name)
            if not match:
                continue
            arch, preset = match.groups()
            name = f"{arch}-{preset}"
            if name not in found:
                found[name] = PretrainedModel(name, arch, preset, path, *_scores(path))
    return [found[name] for name in sorted(found)]


def is_pretrained_name(source: str | os.PathLike) -> bool:
    """Whether ``source`` reads as a model name (``arch-preset``) rather than a path."""
    text = str(source)
    return bool(re.fullmatch(r"[a-z0-9]+[-_][a-z0-9]+", text)) and not Path(text).exists()


def pretrained_path(name: str) -> Path:
    """The checkpoint of the committed model ``name`` (``"dccrn-small"``; ``_`` also accepted)."""
    wanted = name.replace("_", "-").lower()
    models = pretrained_models()
    for model in models:
        if model.name == wanted:
            return model.path
    if models:
        raise DfkdError(f"{name}: neither a file or folder nor a pretrained model (available: "
                        f"{', '.join(m.name for m in models)})")
    searched = ", ".join(str(f) for f in search_folders())
    raise DfkdError(
        f"pretrained model {name!r}: no pretrained/ folder found (searched {searched}). The demo "
        "teachers are committed in the dfkd source repository's pretrained/ folder, not in the "
        f"installed package: clone the repository and set {ENV_VAR}=<repo>/pretrained, or pass "
        "the .pt file's path")

"""The Python API: load a model, enhance audio, distil a student, in a few lines.

In the spirit of asteroid's ``from_pretrained`` + ``separate`` and torchaudio's bundles::

    import dfkd

    enhancer = dfkd.load("convtasnet-small")         # a committed teacher, a run, a .pt or .onnx
    clean = enhancer.enhance(noisy, sample_rate)      # numpy or torch, (samples) or (channels, samples)
    enhancer.enhance_file("noisy.wav", "clean.wav")
    run = dfkd.distill_student(teacher="convtasnet-small", data="data/demo_corpus", out="runs/s")

Everything here is also reachable as ``dfkd.<name>`` (the package forwards these names to this
module on first use, so ``import dfkd`` stays light).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from .data.mixing import mix_corpus
from .distill.methods import KD_METHODS, KDLoss, KDOutput, register_kd_loss
from .errors import DfkdError
from .pretrained import PretrainedModel, is_pretrained_name, pretrained_models, pretrained_path

__all__ = [
    "Enhancer",
    "KDLoss",
    "KDOutput",
    "PretrainedModel",
    "distill_student",
    "kd_methods",
    "load",
    "mix_corpus",
    "pretrained_models",
    "register_kd_loss",
]


def _resolve_source(source: str | os.PathLike) -> Path:
    """A committed model's name -> its checkpoint; anything else is taken as a path."""
    if isinstance(source, str) and is_pretrained_name(source):
        return pretrained_path(source)
    return Path(source)


class Enhancer:
    """A loaded model that enhances arrays, tensors and files, keeping their shape, rate and level.

    Made by :func:`load`. The audio goes through the same path as ``dfkd enhance``: resampled to
    the model's rate and back, cut into overlapping chunks (``chunk_seconds``/``overlap_seconds``)
    so that any length fits in memory, and every channel scaled by its least-squares gain onto the
    input (:mod:`dfkd.deploy.level`) unless ``raw_level=True``.

    Attributes:
        backend: what runs the model (:class:`dfkd.deploy.backends.TorchBackend` or ``OnnxBackend``).
        model: the ``torch.nn.Module`` (``None`` for an ONNX file).
        sample_rate: the model's own rate (inputs may have any rate).
        source: where the model came from.
    """

    def __init__(self, backend, source: str = "", chunk_seconds: float | None = None,
                 overlap_seconds: float | None = None) -> None:
        from .deploy.streaming import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS, Chunking

        self.backend = backend
        self.model = getattr(backend, "model", None)
        self.sample_rate = int(backend.sample_rate)
        self.source = str(source)
        self.chunking = Chunking(DEFAULT_CHUNK_SECONDS if chunk_seconds is None else chunk_seconds,
                                 DEFAULT_OVERLAP_SECONDS if overlap_seconds is None else overlap_seconds)

    def __repr__(self) -> str:
        arch = getattr(self.model, "ARCH", "onnx") if self.model is not None else "onnx"
        return f"Enhancer({self.source or arch!r}, arch={arch!r}, sample_rate={self.sample_rate})"

    def enhance(self, audio, sample_rate: int, raw_level: bool = False):
        """Enhance ``audio`` recorded at ``sample_rate``; returns the same type, shape and rate.

        Args:
            audio: a numpy array or torch tensor (any float dtype, any device), ``(samples,)`` or
                ``(channels, samples)``; each channel is enhanced on its own.
            sample_rate: its rate in Hz (resampled to the model's and back).
            raw_level: keep the model's own output level instead of the input's speech level.

        Raises:
            DfkdError: for a shape other than those two, a non-float or non-finite input.
        """
        from .deploy.level import match_level
        from .deploy.streaming import enhance_chunked

        array, restore = _as_channels(audio)
        if int(sample_rate) <= 0:
            raise DfkdError(f"sample_rate must be a positive number of Hz, not {sample_rate}")
        enhanced = enhance_chunked(self.backend, array, int(sample_rate), self.chunking)
        if not raw_level:
            enhanced = match_level(enhanced, array)
        return restore(enhanced)

    __call__ = enhance

    def enhance_file(self, path: str | os.PathLike, out: str | os.PathLike, raw_level: bool = False,
                     mono: bool = False) -> Path:
        """Enhance the audio file ``path`` into ``out`` (a file, or a folder to write it into:
        an existing one, or a name without extension).

        Streams the file in chunks (any length), keeps its rate, channels, length, format and
        subtype, writes atomically and replaces an existing ``out``; ``mono`` downmixes to one
        channel. Returns the path written.
        """
        from .deploy.enhance import enhance_file

        src, dst = Path(path), Path(out)
        if not src.is_file():
            raise DfkdError(f"{path}: no such audio file (for a folder use enhance_folder)")
        if dst.is_dir() or not dst.suffix:  # a folder (existing, or a name without extension)
            dst = dst / src.name
        enhance_file(self.backend, src, dst, self.chunking, mono=mono, progress=False,
                     raw_level=raw_level)
        return dst

    def enhance_folder(self, folder: str | os.PathLike, out: str | os.PathLike,
                       raw_level: bool = False, mono: bool = False, overwrite: bool = False):
        """Enhance every ``.wav``/``.flac``/``.ogg`` under ``folder`` into the same tree under
        ``out``, as ``dfkd enhance`` does; returns its :class:`~dfkd.deploy.enhance.EnhanceSummary`
        (written, kept because they existed, failed with reasons)."""
        from .deploy.enhance import enhance_paths

        return enhance_paths(self.backend, folder, out, self.chunking, mono=mono,
                             overwrite=overwrite, progress=False, log=lambda message: None,
                             raw_level=raw_level)


def _as_channels(audio):
    """``(channels, samples)`` float32 numpy view of ``audio`` and a function restoring its kind."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(audio, torch.Tensor):
        device, dtype = audio.device, audio.dtype
        if not dtype.is_floating_point:
            raise DfkdError(f"audio: a float tensor is needed (got {dtype}; scale PCM to [-1, 1])")
        array = audio.detach().to("cpu", torch.float32).numpy()

        def back(result: np.ndarray):
            return torch.from_numpy(result).to(device=device, dtype=dtype)
    else:
        array = np.asarray(audio)
        if not np.issubdtype(array.dtype, np.floating):
            raise DfkdError(f"audio: a float array is needed (got {array.dtype}; scale PCM to [-1, 1])")
        dtype = array.dtype

        def back(result: np.ndarray):
            return result.astype(dtype, copy=False)
        array = array.astype(np.float32, copy=False)
    shape = array.shape
    if array.ndim == 1:
        array = array[None]
    elif array.ndim != 2:
        raise DfkdError(f"audio: expected (samples,) or (channels, samples), got shape {shape}")
    elif array.shape[0] > 16 and array.shape[1] <= 16:
        raise DfkdError(f"audio: shape {shape} looks like (samples, channels); pass audio.T "
                        "(channels first, as soundfile.read(..., always_2d=True)[0].T gives)")
    if not np.isfinite(array).all():
        raise DfkdError("audio: contains NaN or Inf samples")

    def restore(result: np.ndarray):
        return back(np.ascontiguousarray(result.reshape(shape)))

    return np.ascontiguousarray(array), restore


def load(source, device: str = "cpu", threads: int | None = None,
         chunk_seconds: float | None = None, overlap_seconds: float | None = None) -> Enhancer:
    """Load a model for enhancement: ``dfkd.load("convtasnet-small").enhance(audio, rate)``.

    Args:
        source: a committed model's name (:func:`pretrained_models`, e.g. ``"dccrn-small"``), a
            run folder (its ``best.pt``), a dfkd or asteroid checkpoint, an ``.onnx`` file from
            ``dfkd export``, or a ``torch.nn.Module`` built by :func:`dfkd.models.build`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        threads: CPU threads for inference (default: the library's choice).
        chunk_seconds, overlap_seconds: the streaming chunks (default 4 s and 0.5 s, as
            ``dfkd enhance``).

    Raises:
        DfkdError: a missing or unreadable model, an unknown name.
    """
    from .deploy.backends import TorchBackend, load_backend

    try:
        import torch.nn as nn
    except ImportError:  # pragma: no cover
        nn = None
    if nn is not None and isinstance(source, nn.Module):
        return Enhancer(TorchBackend(source, device=device), type(source).__name__,
                        chunk_seconds, overlap_seconds)
    path = _resolve_source(source)
    return Enhancer(load_backend(path, device=device, threads=threads), str(source),
                    chunk_seconds, overlap_seconds)


def kd_methods() -> list[str]:
    """Names of every KD method, built-in and registered (:func:`register_kd_loss`)."""
    return list(KD_METHODS)


def distill_student(
    teacher,
    data: str | os.PathLike,
    out: str | os.PathLike,
    preset: str = "tiny",
    method: str = "dfkd",
    steps: int | None = None,
    kd_weight: float | None = None,
    seed: int | None = None,
    config: str | os.PathLike | None = None,
    settings: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = False,
    arch: str | None = None,
    **kd_options: Any,
) -> Path:
    """Distil a student from ``teacher``, exactly as ``dfkd distill`` does; returns the run folder.

    Args:
        teacher: a committed model's name (``"convtasnet-small"``), a run folder or a checkpoint
            (dfkd or asteroid), an ONNX or TorchScript file, or a folder of the teacher's enhanced
            files. The student has the teacher's architecture unless ``arch`` and, unless
            ``seed``, the teacher's seed + 1.
        data: the corpus (any layout of README "Data", e.g. a folder with ``clean/`` + ``noise/``).
        out: the run folder (must not hold a run unless ``resume``).
        preset: the student's preset (``tiny``, ``mini``...).
        method: a KD method of :func:`kd_methods` (``none``, ``output``, ``sisnr``, ``spectral``,
            ``subband``, ``dfkd``, ``dispatch``, or one registered with :func:`register_kd_loss`).
        steps: training steps (default: the config's, 1000).
        kd_weight: lambda (default: the method's).
        seed: the student's seed.
        config: a YAML file as ``--config`` (``configs/distill.yaml`` is the demo recipe).
        settings: dotted keys as ``--set`` (``{"batch_size": 4, "optim.lr": 3e-4}``).
        resume: continue the run in ``out``.
        progress: show the progress bar.
        arch: the student's architecture (default: the teacher's; required for a teacher that is
            an ONNX or TorchScript file or a folder of enhanced files).
        **kd_options: the method's own options, by the names the grid uses (``adapter="fixed:1000"``,
            ``scale_fix=True``, ``bands=8``; :func:`dfkd.distill.methods.kd_options` lists them);
            an option the method does not have is a :class:`DfkdError`.

    Returns:
        ``out`` as a :class:`~pathlib.Path`: ``best.pt``, ``last.pt``, ``config.yaml``,
        ``history.json`` (README, "The run folder"); ``dfkd.load(out)`` enhances with it.
    """
    from .commands import distill as command
    from .commands.train import COMMON_FLAGS, resolve_config
    from .training.run import run_training

    from .training.config import set_key

    teacher_path = str(_resolve_source(teacher))
    flags = {**COMMON_FLAGS, **command.DISTILL_FLAGS}
    # Same order as the command line: defaults, the YAML, `settings` (--set), then the arguments.
    args = argparse.Namespace(out=str(out), resume=resume, config=str(config) if config else None,
                              set=[], no_progress=not progress, **{dest: None for dest in flags})
    defaults = {"model.preset": "tiny", "kd.method": "dfkd"}
    if not resume:
        defaults = command.student_defaults(teacher_path, arch)
    cfg = resolve_config(args, flags, defaults)
    for key, value in (settings or {}).items():
        set_key(cfg, key, value)
    given = {"kd.teacher": teacher_path, "data.root": str(data), "steps": steps,
             "kd.weight": kd_weight, "seed": seed, "model.arch": arch}
    if not resume:
        given.update({"model.preset": preset, "kd.method": method})
    given.update(_kd_option_keys(method if not resume else str(cfg.kd.method), kd_options))
    for key, value in given.items():
        if value is not None:
            set_key(cfg, key, value)
    cfg.progress = bool(progress)
    return Path(run_training(cfg, out, resume=resume))


def _kd_option_keys(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``{option: value}`` of ``method`` -> ``{"kd.<config key>": value}`` (clear error for a
    name the method does not declare)."""
    from .distill.methods import kd_options as declared

    keys = {o.option: o.key for o in declared(method)}
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise DfkdError(f"KD method {method!r} has no option {', '.join(map(repr, unknown))}; "
                        f"its options: {', '.join(keys) or 'none'}")
    return {f"kd.{keys[name]}": value for name, value in options.items()}

"""Enhance audio files with a checkpoint or an ONNX model, streaming long recordings.

A recording is cut into chunks of ``chunk_seconds`` that overlap by ``overlap_seconds``; each chunk
is enhanced on its own and neighbours are cross-faded over the overlap with complementary
``sin^2``/``cos^2`` ramps (they sum to one, so a model that were exactly local would be reproduced
exactly). The file is read and written block by block with soundfile, so memory depends on the chunk
length, never on the recording's length: an hour enhances in the same memory as a minute.

Chunking is not free for non-local models: gLN (Conv-TasNet) normalises over the whole input, the
LSTMs (DCCRN) and the inter-chunk transformers (DPTNet) see the whole input. The ramps put near-zero
weight on each chunk's edges, where a chunk lacks context, which keeps the seam error small (the
README's deployment section gives the measured numbers).

This module reads and writes the files (:mod:`dfkd.deploy.backends` runs the model,
:mod:`dfkd.deploy.streaming` cuts and cross-fades). Any sample rate and channel count: each chunk
is resampled to the model's rate and back, and the channels are enhanced as one batch (or downmixed to one with ``mono=True``). The output keeps the
input's length, rate, channels and format (subtype too, where the format allows it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..audio import AUDIO_EXTENSIONS, AUDIO_FORMATS as _FORMATS, check_complete
from ..errors import DfkdError
from ..files import atomic_write
from .backends import Backend
from .level import stream_level_matched
from .streaming import Chunking, enhance_array, overlap_add

_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}

# Files with at least this many chunks get their own progress bar (short clips would only flicker).
_CHUNK_BAR_MIN = 8


# ---------------------------------------------------------------------------------------------
# Files and folders


def _output_format(src_info, dst: Path) -> tuple[str, str]:
    """``(format, subtype)`` for ``dst``: the input's subtype when the output format accepts it."""
    import soundfile as sf

    fmt = _FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise DfkdError(f"{dst}: unsupported output extension (use {', '.join(AUDIO_EXTENSIONS)})")
    subtype = src_info.subtype  # kept across formats where allowed (24-bit wav -> 24-bit flac)
    if not sf.check_format(fmt, subtype):
        subtype = sf.default_subtype(fmt)
    # Opus only encodes at 8/12/16/24/48 kHz; Vorbis takes any rate.
    if subtype == "OPUS" and src_info.samplerate not in (8000, 12000, 16000, 24000, 48000):
        subtype = "VORBIS"
    return fmt, subtype


def enhance_file(
    backend: Backend,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    chunking: Chunking = Chunking(),
    mono: bool = False,
    progress: bool = True,
    raw_level: bool = False,
) -> dict:
    """Enhance one file to ``dst`` (written atomically), streaming it chunk by chunk.

    The output is put at the input's speech level (:mod:`dfkd.deploy.level`: one least-squares
    gain per channel) unless ``raw_level``. Returns ``{"frames", "rate", "channels", "chunks"}``. Raises :class:`DfkdError` naming ``src``
    when it cannot be read or decoded.
    """
    import soundfile as sf
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    try:
        reader = sf.SoundFile(str(src))
    except Exception as err:  # libsndfile reports every kind of bad file as a generic error
        raise DfkdError(f"{src}: not a readable audio file ({err})") from err
    with reader:
        rate, channels, total = reader.samplerate, reader.channels, reader.frames
        check_complete(src, total)  # empty or truncated: nothing to write
        fmt, subtype = _output_format(reader, dst)
        out_channels = 1 if mono else channels
        grid = getattr(backend, "grid", 1)
        chunk, overlap, step = chunking.frames(rate, backend.sample_rate, grid)
        n_chunks = chunking.count(total, rate, backend.sample_rate, grid)
        bar = tqdm(total=n_chunks, desc=src.name, unit="chunk", leave=False, file=sys.stderr,
                   disable=not progress or n_chunks < _CHUNK_BAR_MIN)
        clip = subtype not in _FLOAT_SUBTYPES  # integer/lossy encoders wrap or distort past full scale

        done = [0]

        def read(n: int) -> np.ndarray:
            try:
                block = reader.read(n, dtype="float32", always_2d=True).T
            except Exception as err:
                raise DfkdError(f"{src}: cannot decode audio ({err})") from err
            if not np.all(np.isfinite(block)):  # never enhance NaN/Inf into a NaN output
                bad = int(block.size - np.count_nonzero(np.isfinite(block)))
                raise DfkdError(f"{src}: audio contains {bad} NaN or Inf sample(s) in frames "
                                f"{done[0]}-{done[0] + block.shape[1]} (nothing written)")
            done[0] += block.shape[1]
            if block.shape[1] < n and done[0] < total:
                raise DfkdError(f"{src}: truncated audio file (the header declares {total} "
                                f"frames, only {done[0]} could be read)")
            return block

        def process(block: np.ndarray) -> np.ndarray:
            return enhance_array(backend, block, rate, mono)

        def write_all(tmp: str) -> None:
            with sf.SoundFile(tmp, "w", samplerate=rate, channels=out_channels,
                              format=fmt, subtype=subtype) as writer:
                def write(block: np.ndarray) -> None:
                    if not np.all(np.isfinite(block)):  # a damaged model: never a NaN file
                        raise DfkdError(f"{src}: the model's output holds NaN or Inf samples "
                                        "(nothing written; are the checkpoint's weights finite?)")
                    writer.write(np.clip(block, -1.0, 1.0).T if clip else block.T)

                def stream(read, write) -> None:
                    overlap_add(read, write, total, chunk, overlap, process, on_chunk=bar.update,
                                step=step)

                if raw_level:
                    stream(read, write)
                else:
                    stream_level_matched(read, write, stream, mono=mono, scratch_dir=Path(tmp).parent)

        try:
            atomic_write(dst, write_all)
        finally:
            bar.close()
    return {"frames": total, "rate": rate, "channels": out_channels, "chunks": n_chunks}


def find_audio(root: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Path]:
    """Audio files (wav, flac, ogg; any case) under ``root``, sorted, skipping ``exclude``'s tree."""
    root = Path(root)
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS or path.name.startswith("."):
            continue
        if skip is not None and Path(os.path.realpath(path)).is_relative_to(skip):
            continue  # outputs written inside the input tree by an earlier run
        found.append(path)  # non-files (folders, broken links) are reported by enhance_file
    return found


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` (found by a folder scan) cannot be read as a file, or None when it can."""
    if path.is_file():
        return None
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return "symbolic link loop"
        except OSError:
            return f"dangling symbolic link (to {os.readlink(path)})"
    if path.is_dir():
        return "a folder, not an audio file"
    return "not a regular file"


def plan_outputs(src: str | os.PathLike, out: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs: a file maps to ``out`` (or ``out/<name>`` if ``out`` is a folder);
    a folder maps to the same relative paths under ``out``."""
    src, out = Path(src), Path(out)
    if src.is_file():
        if out.is_dir() or str(out).endswith(os.sep):
            return [(src, out / src.name)]
        return [(src, out)]
    if src.is_dir():
        if out.is_file():
            raise DfkdError(f"{out}: is a file, but the input {src} is a folder")
        return [(path, out / path.relative_to(src)) for path in find_audio(src, exclude=out)]
    reason = _not_a_file(src) if src.is_symlink() else None
    raise DfkdError(f"{src}: {reason or 'no such file or folder'}")


@dataclass
class EnhanceSummary:
    """What :func:`enhance_paths` did: outputs written, refused (already there), failed (reasons:
    unreadable, empty, truncated or non-finite audio, folders and broken links named like audio)."""

    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


def enhance_paths(
    backend: Backend,
    src: str | os.PathLike,
    out: str | os.PathLike,
    chunking: Chunking = Chunking(),
    mono: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    raw_level: bool = False,
) -> EnhanceSummary:
    """Enhance a file or a folder tree into ``out``; bad inputs are logged, skipped and listed in
    the summary (existing outputs are kept unless ``overwrite``). Outputs are level-matched to
    their inputs unless ``raw_level`` (see :func:`enhance_file`)."""
    from tqdm import tqdm

    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    pairs = plan_outputs(src, out)
    if not pairs:
        raise DfkdError(f"{src}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found")
    summary = EnhanceSummary()
    for path, dst in tqdm(pairs, desc="enhance", unit="file", file=sys.stderr,
                          disable=not progress or len(pairs) < 2):
        if dst.exists() and not overwrite:
            summary.existing.append(dst)
            log(f"{dst}: output exists, not replaced (pass --overwrite to replace it)")
            continue
        reason = _not_a_file(path)
        if reason is not None:
            summary.failed[path] = f"{path}: {reason}"
            log(f"skipped {summary.failed[path]}")
            continue
        try:
            enhance_file(backend, path, dst, chunking, mono=mono, progress=progress,
                         raw_level=raw_level)
        except DfkdError as err:
            summary.failed[path] = str(err)
            log(f"skipped {err}")
            continue
        summary.written.append(dst)
    return summary


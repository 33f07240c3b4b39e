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

Any sample rate and channel count: each chunk is resampled to the model's rate and back, and the
channels are enhanced as one batch (or downmixed to one with ``mono=True``). The output keeps the
input's length, rate, channels and format (subtype too, where the format allows it).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .. import SAMPLE_RATE
from ..files import atomic_write
from ..models import frame_grid
from ..models.inference import enhance_batch
from ..errors import DfkdError

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg")
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}

DEFAULT_CHUNK_SECONDS = 4.0
DEFAULT_OVERLAP_SECONDS = 0.5
# Files with at least this many chunks get their own progress bar (short clips would only flicker).
_CHUNK_BAR_MIN = 8


class Backend(Protocol):
    """Anything that enhances a ``(batch, samples)`` float32 array at ``sample_rate``.

    An optional ``grid`` attribute (samples at ``sample_rate``, see :func:`dfkd.models.frame_grid`) aligns
    chunk starts with the model's framing.
    """

    sample_rate: int

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchBackend:
    """A PyTorch model (eval mode, no autograd) on ``device``."""

    def __init__(self, model, device: str = "cpu") -> None:
        self.device = _torch_device(device)
        self.model = model.eval().to(self.device)
        self.sample_rate = int(getattr(model, "sample_rate", SAMPLE_RATE))
        self.grid = frame_grid(str(getattr(model, "ARCH", "")), getattr(model, "config", {}))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return enhance_batch(self.model, batch, self.device)


class OnnxBackend:
    """An exported ``.onnx`` model run by onnxruntime (no model code needed)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> None:
        from .export import onnx_metadata, onnx_session

        self.session = onnx_session(path, threads=threads, device=device)
        meta = onnx_metadata(self.session)
        self.sample_rate = int(meta.get("sample_rate", SAMPLE_RATE))
        self.grid = frame_grid(meta.get("arch", ""), json.loads(meta.get("config", "{}")))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        from .export import onnx_forward

        return onnx_forward(self.session, batch)


def _torch_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DfkdError(f"--device {device}: CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise DfkdError(f"--device {device}: not a device name ({err})") from err


def load_backend(path: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> Backend:
    """A backend for a dfkd/asteroid checkpoint, a run folder, or an ``.onnx`` file."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise DfkdError(f"{path}: ONNX model not found")
        return OnnxBackend(path, device=device, threads=threads)
    import torch

    from ..checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    return TorchBackend(load_model(path), device=device)


# ---------------------------------------------------------------------------------------------
# Chunked overlap-add


@dataclass(frozen=True)
class Chunking:
    """Chunk and overlap lengths in seconds (validated: overlap at most half a chunk)."""

    chunk_seconds: float = DEFAULT_CHUNK_SECONDS
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS

    def __post_init__(self) -> None:
        if not self.chunk_seconds > 0:
            raise DfkdError(f"--chunk-seconds must be positive (got {self.chunk_seconds})")
        # Each sample must sit in at most two chunks, so that one tail buffer suffices.
        if not 0 <= self.overlap_seconds <= self.chunk_seconds / 2:
            raise DfkdError(
                f"--overlap-seconds must lie in [0, chunk/2] = [0, {self.chunk_seconds / 2:g}] "
                f"(got {self.overlap_seconds})"
            )

    def frames(self, rate: int, model_rate: int | None = None, grid: int = 1) -> tuple[int, int, int]:
        """``(chunk, overlap, step)`` in frames at ``rate``.

        Chunks start every ``chunk - overlap`` frames, a multiple of ``step``: the shortest
        distance that is a whole number of samples at ``model_rate`` and of the model's frame
        ``grid`` there. Every chunk then meets the model on the same frame grid as the whole file
        would (an encoder stride, an STFT hop, DPTNet's segment hop); chunks starting off the
        grid see the signal through shifted frames, which untrained or less shift-invariant models
        answer quite differently.
        """
        model_rate = model_rate or rate
        g = math.gcd(rate, model_rate)
        step_model = math.lcm(max(1, int(grid)), model_rate // g)
        step = step_model * rate // model_rate
        overlap = round(self.overlap_seconds * rate)
        hop = max(step, (round(self.chunk_seconds * rate) - overlap) // step * step)
        overlap = min(overlap, hop)  # at most half a chunk, as validated
        return hop + overlap, overlap, step

    def count(self, total: int, rate: int, model_rate: int | None = None, grid: int = 1) -> int:
        """How many chunks a recording of ``total`` frames is cut into."""
        chunk, overlap, _ = self.frames(rate, model_rate, grid)
        if total <= chunk:
            return 1
        return 1 + math.ceil((total - chunk) / (chunk - overlap))


def crossfade_ramp(length: int) -> np.ndarray:
    """Rising ``sin^2`` ramp; ``1 - ramp`` is the falling one, so the two sum to one exactly."""
    phase = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    return (np.sin(0.5 * np.pi * phase) ** 2).astype(np.float32)


def overlap_add(
    read: Callable[[int], np.ndarray],
    write: Callable[[np.ndarray], None],
    total: int,
    chunk: int,
    overlap: int,
    process: Callable[[np.ndarray], np.ndarray],
    on_chunk: Callable[[], None] | None = None,
    step: int = 1,
) -> None:
    """Stream ``total`` frames through ``process`` in overlapping chunks.

    ``read(n)`` returns the next ``n`` frames as ``(channels, <=n)``; ``process`` maps a chunk to an
    array of the same length (channels may change, e.g. a downmix); ``write`` receives the output in
    order, each frame exactly once. Chunks start every ``chunk - overlap`` frames; the last one ends
    at ``total``, so it is usually short: it is processed together with up to ``chunk - length``
    frames before it (a multiple of ``step``, to stay on the model's frame grid), whose output is
    dropped, so that it sees as much signal as the others. Only one chunk and one tail are held.
    """
    hop = chunk - overlap
    if total <= chunk:
        write(process(read(total)))
        if on_chunk:
            on_chunk()
        return
    rise = crossfade_ramp(overlap)
    fall = 1.0 - rise
    buffer = read(chunk)
    start, tail = 0, None
    context = buffer[:, :0]  # input frames just before ``buffer``: model context, not output
    while True:
        last = start + chunk >= total or buffer.shape[1] < chunk
        lead = context.shape[1]
        out = process(np.concatenate([context, buffer], axis=1) if lead else buffer)[:, lead:]
        if tail is not None:
            out[:, :overlap] = out[:, :overlap] * rise + tail
        if on_chunk:
            on_chunk()
        if last:
            write(out)
            return
        write(out[:, :hop])
        tail = out[:, hop:] * fall
        start += hop
        more = read(min(hop, total - start - overlap))
        following = np.concatenate([buffer[:, hop:], more], axis=1)
        lend = (chunk - following.shape[1]) // step * step  # <= hop: within the old buffer
        context = buffer[:, hop - lend : hop]
        buffer = following
        if more.shape[1] == 0:  # the file ended early (a header that over-counted frames)
            write(out[:, hop:])  # no chunk follows to cross-fade with
            return


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad the last axis to ``length``."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])])


def enhance_array(backend: Backend, audio: np.ndarray, rate: int, mono: bool = False) -> np.ndarray:
    """Enhance a whole ``(channels, samples)`` array at ``rate`` in one call: same shape back.

    Resamples to the model's rate and back, enhancing all channels as one batch (or their mean
    with ``mono``, giving one channel).
    """
    from ..audio import resample

    audio = np.asarray(audio, dtype=np.float32)
    if mono:
        audio = audio.mean(axis=0, keepdims=True)
    length = audio.shape[-1]
    if length == 0:
        return audio.copy()
    model_rate = backend.sample_rate
    noisy = resample(audio, rate, model_rate) if rate != model_rate else audio
    enhanced = np.asarray(backend(np.ascontiguousarray(noisy, dtype=np.float32)), dtype=np.float32)
    if rate != model_rate:
        enhanced = resample(enhanced, model_rate, rate)
    return np.ascontiguousarray(_fit(enhanced, length), dtype=np.float32)


def enhance_chunked(
    backend: Backend,
    audio: np.ndarray,
    rate: int,
    chunking: Chunking = Chunking(),
    mono: bool = False,
) -> np.ndarray:
    """In-memory twin of :func:`enhance_file`: the same overlap-add over an array (for tests)."""
    audio = np.asarray(audio, dtype=np.float32)
    chunk, overlap, step = chunking.frames(rate, backend.sample_rate, getattr(backend, "grid", 1))
    position = 0
    pieces: list[np.ndarray] = []

    def read(n: int) -> np.ndarray:
        nonlocal position
        block = audio[:, position : position + n]
        position += block.shape[1]
        return block

    overlap_add(read, pieces.append, audio.shape[1], chunk, overlap,
                lambda x: enhance_array(backend, x, rate, mono), step=step)
    return np.concatenate(pieces, axis=1)


# ---------------------------------------------------------------------------------------------
# Files and folders


def _output_format(src_info, dst: Path) -> tuple[str, str]:
    """``(format, subtype)`` for ``dst``: the input's subtype when the output format accepts it."""
    import soundfile as sf

    fmt = _FORMATS.get(dst.suffix.lower())
    if fmt is None:
        raise DfkdError(f"{dst}: unsupported output extension (use {', '.join(AUDIO_EXTENSIONS)})")
    subtype = src_info.subtype
    if fmt != src_info.format or not sf.check_format(fmt, subtype):
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
) -> dict:
    """Enhance one file to ``dst`` (written atomically), streaming it chunk by chunk.

    Returns ``{"frames", "rate", "channels", "chunks"}``. Raises :class:`DfkdError` naming ``src``
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
        fmt, subtype = _output_format(reader, dst)
        out_channels = 1 if mono else channels
        grid = getattr(backend, "grid", 1)
        chunk, overlap, step = chunking.frames(rate, backend.sample_rate, grid)
        n_chunks = chunking.count(total, rate, backend.sample_rate, grid)
        bar = tqdm(total=n_chunks, desc=src.name, unit="chunk", leave=False, file=sys.stderr,
                   disable=not progress or n_chunks < _CHUNK_BAR_MIN)
        clip = subtype not in _FLOAT_SUBTYPES  # integer/lossy encoders wrap or distort past full scale

        def read(n: int) -> np.ndarray:
            try:
                return reader.read(n, dtype="float32", always_2d=True).T
            except Exception as err:
                raise DfkdError(f"{src}: cannot decode audio ({err})") from err

        def process(block: np.ndarray) -> np.ndarray:
            return enhance_array(backend, block, rate, mono)

        def write_all(tmp: str) -> None:
            with sf.SoundFile(tmp, "w", samplerate=rate, channels=out_channels,
                              format=fmt, subtype=subtype) as writer:
                def write(block: np.ndarray) -> None:
                    writer.write(np.clip(block, -1.0, 1.0).T if clip else block.T)

                overlap_add(read, write, total, chunk, overlap, process, on_chunk=bar.update,
                            step=step)

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
        if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file() or path.name.startswith("."):
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue  # outputs written inside the input tree by an earlier run
        found.append(path)
    return found


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
    raise DfkdError(f"{src}: no such file or folder")


@dataclass
class EnhanceSummary:
    """What :func:`enhance_paths` did: outputs written, skipped (already there), failed (reasons)."""

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
) -> EnhanceSummary:
    """Enhance a file or a folder tree into ``out``; bad inputs are logged and skipped."""
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
            log(f"{dst}: exists, skipped (use --overwrite to replace it)")
            continue
        try:
            enhance_file(backend, path, dst, chunking, mono=mono, progress=progress)
        except DfkdError as err:
            summary.failed[path] = str(err)
            log(f"skipped {err}")
            continue
        summary.written.append(dst)
    return summary


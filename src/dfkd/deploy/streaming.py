"""Chunked overlap-add: enhance a recording of any length in overlapping chunks, in bounded memory.

A recording is cut into chunks of ``chunk_seconds`` that overlap by ``overlap_seconds``; each chunk
is enhanced on its own and neighbours are cross-faded over the overlap with complementary
``sin^2``/``cos^2`` ramps (they sum to one, so a model that were exactly local would be reproduced
exactly). Only one chunk and one tail are held, whatever the recording's length. Each chunk is
resampled to the model's rate and back (:func:`enhance_array`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import DfkdError
from .backends import Backend

DEFAULT_CHUNK_SECONDS = 4.0
DEFAULT_OVERLAP_SECONDS = 0.5


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

"""Output level: put the enhanced speech back at the level it has in the input.

Models trained on SI-SNR (all three architectures here, by their recipes) have no fixed output
gain: a trained Conv-TasNet or DPTNet may answer 10-25 dB below its input, or with the sign
flipped, because the loss cannot see either. ``dfkd enhance`` and :meth:`dfkd.api.Enhancer.enhance`
therefore scale each output channel by the **least-squares gain onto the input**::

    g = <x, y> / <y, y>        (x: the input channel, y: the raw model output, whole recording)

``g·y`` is the scaled output that best explains the input, the same projection SI-SNR scores with.
With ``x = s + n`` and ``y ≈ a·s`` it gives ``g ≈ 1/a``: the speech comes out at the level it has
in the recording (a noisy input is louder than its speech by ``10·log10(1 + 10^(-SNR/10))`` dB,
1.2 dB at 5 dB SNR, 0.4 dB at 10 dB), it never comes out louder than the input
(``|g·y| = |x|·cos θ ≤ |x|``), and an inverted output is turned the right way up (``g < 0``).
Matching the output's RMS to the input's instead would put noise-dominated inputs' speech up to the
noise's level. The gain is one number per channel for the whole file, never per chunk, so it does
not pump. ``raw_level=True`` (``--raw-level``) keeps the model's own output.

A file streams through the model once: the raw output goes to a temporary float32 file while the
sums are accumulated, then it is copied to the output with the gain applied, block by block (memory
stays independent of the recording's length).
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from typing import Callable

import numpy as np

_BLOCK = 1 << 16  # frames per block when the gained copy is written


class LevelMatch:
    """Running per-channel sums ``<x, y>`` and ``<y, y>`` of an input ``x`` and an output ``y``."""

    def __init__(self) -> None:
        self.cross: np.ndarray | None = None
        self.energy: np.ndarray | None = None

    def update(self, reference: np.ndarray, estimate: np.ndarray) -> None:
        """Add ``(channels, n)`` blocks of the input and the raw output at the same positions."""
        x = np.asarray(reference, dtype=np.float64)
        y = np.asarray(estimate, dtype=np.float64)
        cross, energy = (x * y).sum(axis=-1), (y * y).sum(axis=-1)
        if self.cross is None:
            self.cross, self.energy = cross, energy
        else:
            self.cross, self.energy = self.cross + cross, self.energy + energy

    def gains(self) -> np.ndarray:
        """Per-channel least-squares gains; 1 where the output is silent or a sum is not finite."""
        if self.cross is None:
            return np.ones(1, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = self.cross / self.energy
        gain = np.where(np.isfinite(gain) & (self.energy > 1e-20), gain, 1.0)
        return gain.astype(np.float32)


def least_squares_gain(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-channel gains ``<x, y> / <y, y>`` of ``(channels, samples)`` arrays (see the module)."""
    match = LevelMatch()
    match.update(np.atleast_2d(reference), np.atleast_2d(estimate))
    return match.gains()


def match_level(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``estimate`` (``(channels, samples)``) scaled per channel onto ``reference``'s speech level."""
    estimate = np.atleast_2d(np.asarray(estimate, dtype=np.float32))
    gains = least_squares_gain(reference, estimate)
    return estimate * gains[:, None]


def level_db(audio: np.ndarray) -> float:
    """RMS level in dBFS of a whole array (``-inf`` for silence)."""
    rms = float(np.sqrt(np.mean(np.asarray(audio, dtype=np.float64) ** 2))) if np.size(audio) else 0.0
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def stream_level_matched(
    read: Callable[[int], np.ndarray],
    write: Callable[[np.ndarray], None],
    run: Callable[[Callable[[int], np.ndarray], Callable[[np.ndarray], None]], None],
    mono: bool = False,
    scratch_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Run a stream (``run(read, write)``, e.g. an overlap-add) with its output level-matched.

    ``read(n)`` gives input blocks ``(channels, <=n)``; the output blocks ``run`` writes are in
    the same order and positions (one or, with ``mono``, the input's mean channel). The raw output
    is spooled to a temporary file in ``scratch_dir``; then ``write`` receives it times the
    per-channel gain. Returns the gains.
    """
    pending: deque[np.ndarray] = deque()  # input read but not yet matched by output
    match = LevelMatch()

    def tapped_read(n: int) -> np.ndarray:
        block = read(n)
        pending.append(block.mean(axis=0, keepdims=True) if mono else block)
        return block

    with tempfile.TemporaryFile(dir=scratch_dir, prefix=".dfkd-raw-") as spool:
        channels = 0
        frames = 0

        def spool_write(block: np.ndarray) -> None:
            nonlocal channels, frames
            block = np.asarray(block, dtype=np.float32)
            channels = block.shape[0]
            need, parts = block.shape[1], []
            while need > 0 and pending:
                head = pending[0]
                take = min(need, head.shape[1])
                parts.append(head[:, :take])
                if take == head.shape[1]:
                    pending.popleft()
                else:
                    pending[0] = head[:, take:]
                need -= take
            reference = np.concatenate(parts, axis=1) if parts else block[:, :0]
            if reference.shape[1] < block.shape[1]:  # never expected: output past the input read
                reference = np.pad(reference, ((0, 0), (0, block.shape[1] - reference.shape[1])))
            match.update(reference, block)
            spool.write(np.ascontiguousarray(block.T).tobytes())
            frames += block.shape[1]

        run(tapped_read, spool_write)
        gains = match.gains()
        spool.seek(0)
        left = frames
        while left > 0:
            n = min(_BLOCK, left)
            data = np.frombuffer(spool.read(n * channels * 4), dtype=np.float32)
            write(data.reshape(n, channels).T * gains[:, None])
            left -= n
    return gains

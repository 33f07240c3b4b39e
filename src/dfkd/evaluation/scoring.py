"""Score many clips in worker processes, so that one bad clip cannot end an evaluation.

PESQ's C code (ITU-T P.862 reference implementation) can raise on odd input (silence, clips under
0.25 s) and, on some inputs and builds, abort or crash the whole process. Each worker process
scores one clip at a time; the parent knows which clip every worker holds, so

- a clip whose metric raises is reported with the error and skipped;
- a clip whose worker dies (abort, segfault, out of memory) or overruns ``clip_timeout`` is
  reported and skipped, and a fresh worker takes the dead one's place;

while every other clip is scored. A clip is scored completely or not at all (see
:func:`dfkd.evaluation.metrics.score_clip`), so every metric's mean is over the same clips.

Workers are forked where the platform allows it (fast, nothing to re-import) and spawned
elsewhere. Each runs PyTorch on one thread: there is one worker per core already.
"""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Iterable, Iterator, Sequence

import numpy as np

from .metrics import NEEDS_NOISY, check_metrics, score_clip

DEFAULT_CLIP_TIMEOUT = 600.0  # seconds; a 10 s DNS clip takes about 1 s on one core
# Workers that all die before any answer are broken (e.g. cannot start), not fed bad clips.
_MAX_CRASHES_BEFORE_ANY_RESULT = 3


@dataclass
class ClipJob:
    """The audio of one utterance at ``sample_rate``: enhanced, clean and (optionally) noisy."""

    index: int
    name: str
    enhanced: np.ndarray
    clean: np.ndarray
    noisy: np.ndarray | None = None


@dataclass
class ClipResult:
    """The scores of one clip, or why it could not be scored (``error`` is then set)."""

    index: int
    name: str
    scores: dict[str, float] = field(default_factory=dict)
    noisy_scores: dict[str, float] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def score_job(
    job: ClipJob, metrics: Sequence[str], sample_rate: int, score_noisy: bool
) -> ClipResult:
    """Score one clip in this process; any exception becomes the result's ``error``."""
    try:
        scores = score_clip(job.enhanced, job.clean, job.noisy, sample_rate, metrics)
        noisy_scores = None
        if score_noisy and job.noisy is not None:
            # The input's own scores: the row every table starts with. Its SI-SNRi is 0 by
            # definition, so it is not computed.
            noisy_metrics = [m for m in metrics if m not in NEEDS_NOISY]
            noisy_scores = score_clip(job.noisy, job.clean, None, sample_rate, noisy_metrics)
        return ClipResult(job.index, job.name, scores, noisy_scores)
    except Exception as err:  # reported per clip; the evaluation goes on
        return ClipResult(job.index, job.name, error=f"{type(err).__name__}: {err}")


def _worker_main(conn: Connection, metrics: list[str], sample_rate: int, score_noisy: bool) -> None:
    # Ctrl-C goes to the whole process group: let the parent decide, it terminates us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A crash is reported by the parent, naming the clip; a forked copy of the parent's
    # faulthandler (pytest enables one) would only add a stack dump of the parent's frames.
    faulthandler.disable()
    import torch

    torch.set_num_threads(1)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(score_job(job, metrics, sample_rate, score_noisy))


def _context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


class _Worker:
    def __init__(self, ctx, args: tuple) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        self.job: ClipJob | None = None
        self.started = 0.0

    def give(self, job: ClipJob) -> None:
        self.job, self.started = job, time.monotonic()
        try:
            self.conn.send(job)
        except OSError:
            pass  # the worker died while idle: the next poll reports it as this job's crash

    def stop(self, timeout: float = 2.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _death_message(process: mp.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return (f"worker process {how} while scoring this clip "
            "(PESQ's C code can abort on odd input)")


def score_clips(
    jobs: Iterable[ClipJob],
    metrics: Sequence[str],
    sample_rate: int = 16000,
    *,
    workers: int | None = None,
    score_noisy: bool = True,
    clip_timeout: float | None = DEFAULT_CLIP_TIMEOUT,
) -> Iterator[ClipResult]:
    """Yield one :class:`ClipResult` per job, in completion order (use ``index`` to sort).

    ``jobs`` is consumed lazily, one job per idle worker, so a generator that reads or enhances
    audio overlaps with scoring and never holds more than ``workers`` clips in flight.
    ``workers=0`` scores in this process: no isolation, meant for quick in-training validation.
    """
    metrics = check_metrics(metrics)
    workers = default_workers() if workers is None else int(workers)
    if workers <= 0:
        for job in jobs:
            yield score_job(job, metrics, sample_rate, score_noisy)
        return

    ctx = _context()
    args = (metrics, sample_rate, score_noisy)
    slots: list[_Worker | None] = [None] * workers  # started on demand, restarted after a crash
    source = iter(jobs)
    exhausted = False
    answered = crashed = 0  # to tell one bad clip from workers that cannot run at all
    try:
        while True:
            for slot, worker in enumerate(slots):
                if exhausted:
                    break
                if worker is not None and worker.job is not None:
                    continue
                job = next(source, None)
                if job is None:
                    exhausted = True
                    break
                if worker is None:
                    worker = slots[slot] = _Worker(ctx, args)
                worker.give(job)
            busy = [w for w in slots if w is not None and w.job is not None]
            if not busy:
                return
            timeout = None
            if clip_timeout is not None:
                oldest = min(w.started for w in busy)
                timeout = max(0.0, oldest + clip_timeout - time.monotonic())
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
            for slot, worker in enumerate(slots):
                if worker is None or worker.job is None:
                    continue
                job = worker.job
                result = None
                try:
                    if worker.conn.poll():
                        result = worker.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    worker.job = None
                    answered += 1
                    yield result
                    continue
                overdue = clip_timeout is not None and (
                    time.monotonic() - worker.started > clip_timeout
                )
                if worker.process.is_alive() and not overdue:
                    continue
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()
                    message = f"scoring took longer than {clip_timeout:g} s; worker stopped"
                else:
                    worker.process.join()
                    message = _death_message(worker.process)
                worker.conn.close()
                slots[slot] = None
                crashed += 1
                if answered == 0 and crashed >= _MAX_CRASHES_BEFORE_ANY_RESULT:
                    raise RuntimeError(f"scoring workers die before scoring any clip: {message}")
                yield ClipResult(job.index, job.name, error=message)
    finally:
        for worker in slots:
            if worker is not None:
                worker.stop()

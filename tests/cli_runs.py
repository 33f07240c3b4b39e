"""Shared by the tests that train through the command line: the CLI entry called with any
argument types, the flags of a fast `mini` run (a few seconds on one thread), and the same
command in a child process that can be killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dfkd import cli
from dfkd.checkpoint import read_checkpoint

ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(*argv: object) -> int:
    """``dfkd ARGV...`` in this process (paths and numbers turned into strings); its exit code."""
    return cli.main([str(a) for a in argv])


def fast_flags(*, batch: int = 4, segment: float = 1, valid_segment: float = 1.25,
               pesq_clips: int = 0) -> list[str]:
    """Flags of a fast run: the `mini` preset, small batches of short segments, one thread, no
    progress bar, and at most ``pesq_clips`` validation clips scored with PESQ (it is slow)."""
    return ["--preset", "mini", "--batch-size", str(batch), "--segment-seconds", f"{segment:g}",
            "--threads", "1", "--no-progress",
            "--set", f"data.valid_segment_seconds={valid_segment:g}",
            "--set", f"data.pesq_clips={pesq_clips}"]


def dfkd_command(*argv: object) -> list[str]:
    """``python -m dfkd ARGV...`` for a child process."""
    return [sys.executable, "-m", "dfkd", *[str(a) for a in argv]]


def reference_beside_a_killed_run(args: list, reference: Path, killed: Path
                                  ) -> tuple[subprocess.Popen, int]:
    """Start ``dfkd ARGS --out reference`` and the same into ``killed``; SIGKILL the second as soon
    as it has written a ``last.pt``. Returns the reference process (still running: communicate
    with it) and the step that the killed run's ``last.pt`` holds."""
    ref = subprocess.Popen(dfkd_command(*args, "--out", reference), env=ONE_THREAD_ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    victim = subprocess.Popen(dfkd_command(*args, "--out", killed), env=ONE_THREAD_ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "last.pt").exists():
        assert victim.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    return ref, int(read_checkpoint(killed / "last.pt")["step"])

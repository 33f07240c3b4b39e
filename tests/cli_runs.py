"""Shared by the tests that train through the command line: the CLI entry called with any
argument types, and the flags of a fast `mini` run (a few seconds on one thread)."""

from __future__ import annotations

from dfkd import cli


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

"""Peak memory of `dfkd enhance` on long files: it must not grow with the recording's length.

Writes synthetic recordings of each length (default 10 and 60 minutes, 16 kHz mono 16-bit) to a
temporary folder, block by block, then enhances each in a fresh subprocess with a small model and
reads that process's peak resident set size (``ru_maxrss``). Prints the peaks and their ratio to the
shortest file's; streaming chunked overlap-add should give ~1.0, where loading the whole file would
grow with it (the "whole file" column shows the float32 size of the longest recording alone).

    .venv/bin/python benchmarks/enhance_memory.py [--minutes 10,60] [--arch convtasnet --preset mini]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

_CHILD = """
import resource, sys, time
from dfkd.deploy.backends import load_backend
from dfkd.deploy.enhance import enhance_file
backend = load_backend(sys.argv[1], threads=int(sys.argv[4]))
start = time.perf_counter()
info = enhance_file(backend, sys.argv[2], sys.argv[3], progress=False)
elapsed = time.perf_counter() - start
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, elapsed, info["chunks"])
"""


def write_recording(path: Path, minutes: float, rate: int, seed: int = 0) -> None:
    """Speech-like bursts in noise, written a minute at a time (this process stays small too)."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for _ in range(int(np.ceil(minutes))):
            t = np.arange(60 * rate) / rate
            bursts = np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0.3)
            out.write((0.2 * bursts + 0.05 * rng.standard_normal(t.size)).astype(np.float32))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="10,60")
    parser.add_argument("--arch", default="convtasnet")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--rate", type=int, default=16000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from dfkd.checkpoint import model_payload, save_checkpoint
    from dfkd.models import build

    lengths = [float(m) for m in args.minutes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dfkd-memory-") as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        ckpt = tmp / "model.pt"
        save_checkpoint(ckpt, model_payload(build(args.arch, args.preset)))
        for minutes in lengths:
            src, dst = tmp / f"{minutes:g}min.wav", tmp / f"{minutes:g}min.enhanced.wav"
            write_recording(src, minutes, args.rate)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _CHILD, str(ckpt), str(src), str(dst),
                                   str(args.threads)], check=True, capture_output=True, text=True)
            peak_kb, seconds, chunks = done.stdout.split()
            assert sf.info(str(dst)).frames == sf.info(str(src)).frames
            rows.append((minutes, int(peak_kb) / 1024, float(seconds), int(chunks)))
            print(f"{minutes:g} min: peak RSS {rows[-1][1]:.0f} MB, enhanced in {float(seconds):.0f} s "
                  f"({int(chunks)} chunks; wall {time.perf_counter() - start:.0f} s)", flush=True)
            src.unlink()
            dst.unlink()
    base = rows[0][1]
    longest = max(lengths)
    print(f"\n{'minutes':>8s} {'peak RSS MB':>12s} {'ratio':>6s} {'RTF':>7s}")
    for minutes, peak, seconds, _ in rows:
        print(f"{minutes:8g} {peak:12.0f} {peak / base:6.3f} {seconds / (minutes * 60):7.4f}")
    print(f"({args.arch}/{args.preset}, {args.rate} Hz mono, {args.threads} thread(s); the "
          f"{longest:g}-minute file alone is {longest * 60 * args.rate * 4 / 2**20:.0f} MB as float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

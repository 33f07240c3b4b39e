"""Does the memory allocator slow a KD training step, measured side by side in one run?

A study student's KD step on one thread (Conv-TasNet `nano`, configs/study.yaml's batch of
8 x 1 s, the teacher's output given as with the teacher cache) spends a fifth to a third of its
CPU time in the kernel, with ~14 000 minor page faults a second (`ps`, session 10): glibc's
malloc hands the step's large temporary tensors back to the system (`munmap` / heap trim) and
faults them in again on the next step. This prints, per allocator setting, the step's CPU time
(user and system), wall time and page faults, each run in a fresh process (the allocator is
chosen at process start), in interleaved rounds, and the ratio against glibc's defaults:

* ``glibc``: the defaults;
* ``glibc-keep``: :func:`dfkd.training.allocator.keep_freed_memory` (``mallopt``: the mmap and
  trim thresholds raised so freed memory stays in the process), what ``dfkd train``,
  ``dfkd distill`` and the workers of ``dfkd experiment`` do;
* ``jemalloc`` / ``tcmalloc``: preloaded (``LD_PRELOAD``), where the Debian packages
  ``libjemalloc2`` / ``libtcmalloc-minimal4`` are installed; left out otherwise.

    python benchmarks/allocator_settings.py [--arch convtasnet] [--preset nano] [--method subband]
        [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

KEEP = "DFKD_BENCH_KEEP_FREED_MEMORY"  # tells the child to call keep_freed_memory()
LIBRARIES = {"jemalloc": "libjemalloc.so.2", "tcmalloc": "libtcmalloc_minimal.so.4"}
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


def settings() -> dict[str, dict[str, str]]:
    """Allocator name -> the environment variables that select it (the installed ones only)."""
    found: dict[str, dict[str, str]] = {"glibc": {}, "glibc-keep": {KEEP: "1"}}
    for name, library in LIBRARIES.items():
        path = next((Path(d) / library for d in LIBRARY_DIRS if (Path(d) / library).is_file()), None)
        if path is not None:
            found[name] = {"LD_PRELOAD": str(path)}
    return found


def child(arch: str, preset: str, method: str, steps: int) -> None:
    """Time ``steps`` KD training steps in this process; print one JSON line."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_step_profile import BATCH, SECONDS, make_trainer  # the profile's own step

    from dfkd import SAMPLE_RATE
    from dfkd.training.allocator import keep_freed_memory

    if os.environ.get(KEEP) and not keep_freed_memory():
        raise SystemExit("keep_freed_memory() did nothing here (not glibc?)")
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    samples = int(SECONDS * SAMPLE_RATE)
    noisy = 0.1 * torch.randn(BATCH, samples, generator=gen)
    clean = 0.1 * torch.randn(BATCH, samples, generator=gen)
    teacher_out = clean + 0.01 * torch.randn(BATCH, samples, generator=gen)
    trainer = make_trainer(arch, method, overlap_add=True, preset=preset)
    for _ in range(5):  # warm-up: oneDNN kernels, the allocator's first pools
        trainer.train_step(noisy, clean, teacher_out)
    usage, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        trainer.train_step(noisy, clean, teacher_out)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"user": (after.ru_utime - usage.ru_utime) / steps,
                      "sys": (after.ru_stime - usage.ru_stime) / steps, "wall": wall / steps,
                      "faults": (after.ru_minflt - usage.ru_minflt) / steps}))


def measure(env: dict[str, str], args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--arch", args.arch, "--preset", args.preset,
               "--method", args.method, "--steps", str(args.steps)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="convtasnet")
    parser.add_argument("--preset", default="nano")
    parser.add_argument("--method", default="subband", help="KD method of the step (default: subband)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per process")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per setting")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.arch, args.preset, args.method, args.steps)
        return
    chosen = settings()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    for _ in range(args.rounds):  # interleaved: a change in the machine's load hits every setting
        for name, env in chosen.items():
            samples[name].append(measure(env, args))
    print(f"{args.arch} {args.preset}, `{args.method}` KD step, batch 8 x 1 s, 1 thread; per step, "
          f"median of {args.rounds} processes x {args.steps} steps")
    print(f"{'allocator':11s} {'user ms':>8s} {'sys ms':>7s} {'CPU ms':>7s} {'wall ms':>8s} "
          f"{'faults':>7s} {'CPU vs glibc':>13s} {'wall vs glibc':>14s}")
    median = {name: {k: statistics.median(s[k] for s in runs) for k in runs[0]}
              for name, runs in samples.items()}
    base = median["glibc"]
    for name, m in median.items():
        cpu = m["user"] + m["sys"]
        print(f"{name:11s} {1e3 * m['user']:8.1f} {1e3 * m['sys']:7.1f} {1e3 * cpu:7.1f} "
              f"{1e3 * m['wall']:8.1f} {m['faults']:7.0f} {(base['user'] + base['sys']) / cpu:12.2f}x "
              f"{base['wall'] / m['wall']:13.2f}x")
    print("ratio > 1: faster than glibc's defaults; faults: minor page faults per step")


if __name__ == "__main__":
    main()

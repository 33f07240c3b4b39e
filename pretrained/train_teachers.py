"""Train the three `small` demo teachers side by side on one machine (meant for a GPU).

Each teacher is an ordinary `dfkd train` run on the on-the-fly mixtures written by
``make_teacher_sources.py``. The number of steps is the only thing this script decides: it times a
few training steps of all three models running at once on the device, then gives every teacher as
many steps as fit in ``--minutes`` of wall time (the cosine schedule needs the count up front).
The run folders record the exact configuration, so a rerun with the printed `dfkd train` commands
reproduces them without this script.

Usage::

    python pretrained/train_teachers.py --sources data/teacher_sources --out runs/teachers \
        --minutes 7 [--device cuda] [--batch-size 16] [--segment-seconds 3] [--deadline SECONDS] \
        [--arch convtasnet --arch dccrn] [--init pretrained] [--lr 5e-4]

``--init DIR`` continues from ``DIR/<arch>_small.pt`` (the committed teachers: a further stage, as
stage 2 continued stage 1; ``--lr`` then sets a lower peak) instead of training from scratch;
``--arch`` picks the teachers to train (default all three).

``--deadline`` (seconds from now) makes every run save ``last.pt`` and stop there if it is still
going (a time-limited machine, gpu/device_study.sh); ``dfkd train --resume`` continues it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ARCHS = ("convtasnet", "dptnet", "dccrn")
PROBE = r"""
import sys, time, torch
from dfkd import models
from dfkd.losses import neg_si_snr
arch, device, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
torch.manual_seed(0)
model = models.build(arch, "small").to(device)
opt = torch.optim.AdamW(model.parameters(), 1e-3)
x = torch.randn(batch, int(16000 * seconds), device=device) * 0.1
y = x * 0.5
def step():
    opt.zero_grad(); loss = neg_si_snr(model(x), y); loss.backward(); opt.step()
for _ in range(5): step()
if device.startswith("cuda"): torch.cuda.synchronize()
t = time.perf_counter(); n = 30
for _ in range(n): step()
if device.startswith("cuda"): torch.cuda.synchronize()
print((time.perf_counter() - t) / n)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, required=True, help="wall-time budget of the training")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--segment-seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds from now at which unfinished runs save last.pt and stop")
    parser.add_argument("--safety", type=float, default=0.8,
                        help="share of the probed step rate to plan with (data loading, validation)")
    parser.add_argument("--arch", action="append", choices=ARCHS, default=None,
                        help="a teacher to train (repeatable; default: all three)")
    parser.add_argument("--init", type=Path, default=None, metavar="DIR",
                        help="continue from DIR/<arch>_small.pt instead of from scratch")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--warmup-steps", type=int, default=None)
    args = parser.parse_args(argv)
    archs = tuple(dict.fromkeys(args.arch)) if args.arch else ARCHS
    if args.init is not None:
        missing = [str(args.init / f"{a}_small.pt") for a in archs if not (args.init / f"{a}_small.pt").is_file()]
        if missing:
            print(f"error: --init: no teacher {', '.join(missing)}", file=sys.stderr)
            return 2
    deadline = None if args.deadline is None else time.time() + args.deadline
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    # 1. Probe: the three models step at once, as they will train.
    probes = {a: subprocess.Popen([sys.executable, "-c", PROBE, a, args.device, str(args.batch_size),
                                   str(args.segment_seconds)], stdout=subprocess.PIPE, text=True, env=env)
              for a in archs}
    step_s = {}
    for arch, proc in probes.items():
        out, _ = proc.communicate()
        if proc.returncode != 0:
            print(f"probe failed for {arch}", file=sys.stderr)
            return 1
        step_s[arch] = float(out.strip().splitlines()[-1])
    budget = args.minutes * 60 * args.safety
    steps = {a: max(100, int(budget / s) // 100 * 100) for a, s in step_s.items()}
    print(json.dumps({"probe_step_seconds": step_s, "steps": steps}), flush=True)

    # 2. Train the three side by side.
    args.out.mkdir(parents=True, exist_ok=True)
    procs = {}
    for arch in archs:
        cmd = [sys.executable, "-m", "dfkd", "train", "--arch", arch, "--preset", "small",
               "--data", str(args.sources), "--out", str(args.out / arch),
               "--steps", str(steps[arch]), "--batch-size", str(args.batch_size),
               "--segment-seconds", str(args.segment_seconds), "--seed", str(args.seed),
               "--device", args.device, "--workers", str(args.workers), "--threads", str(args.threads),
               "--valid-every", str(max(200, steps[arch] // 10)),
               "--checkpoint-every", str(max(200, steps[arch] // 10)),
               "--set", "data.pesq_clips=0", "--no-progress"]
        if args.init is not None:
            cmd += ["--init", str(args.init / f"{arch}_small.pt")]
        if args.lr is not None:
            cmd += ["--set", f"optim.lr={args.lr:g}"]
        if args.warmup_steps is not None:
            cmd += ["--set", f"optim.warmup_steps={args.warmup_steps}"]
        if deadline is not None:
            cmd += ["--set", f"deadline={deadline:.0f}"]
        print("$ dfkd " + " ".join(cmd[3:]), flush=True)
        log = open(args.out / f"{arch}.log", "w")
        procs[arch] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    start = time.time()
    failed, stopped = [], []
    for arch, (proc, log) in procs.items():
        code = proc.wait()
        if code == 75:  # dfkd.cli.EXIT_STOPPED: last.pt saved at the deadline
            stopped.append(arch)
        elif code != 0:
            failed.append(arch)
        log.close()
    print(f"trained in {(time.time() - start) / 60:.1f} min; stopped at the deadline: "
          f"{stopped or 'none'}; failed: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

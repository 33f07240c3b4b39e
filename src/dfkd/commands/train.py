"""`dfkd train`: train a model on the task loss alone (a teacher, or a `none` student).

    dfkd train --arch convtasnet --preset small --data DIR --out RUN [--config YAML]
               [--set optim.lr=3e-4 ...] [--steps N] [--batch-size B] [--resume]

Under ``torchrun --nproc_per_node=N`` the same command trains with DistributedDataParallel. The
run folder receives ``config.yaml``, ``last.pt``, ``best.pt``, ``history.json`` and ``tb/``.
This module also holds the options and the config resolution shared with ``dfkd distill``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

from ..errors import DfkdError
from ..training.config import (
    TrainConfig,
    apply_mapping,
    load_run_config,
    load_yaml,
    parse_assignment,
    set_key,
)

# dedicated flag (argparse dest) -> config key
COMMON_FLAGS: dict[str, str] = {
    "preset": "model.preset",
    "data": "data.root",
    "steps": "steps",
    "batch_size": "batch_size",
    "segment_seconds": "data.segment_seconds",
    "lr": "optim.lr",
    "seed": "seed",
    "device": "device",
    "task_loss": "task_loss",
    "valid_every": "valid_every",
    "checkpoint_every": "checkpoint_every",
    "workers": "data.num_workers",
    "threads": "threads",
    "init": "model.init",
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of both `dfkd train` and `dfkd distill`."""
    parser.add_argument("--out", metavar="RUN", required=True, help="run folder to write")
    parser.add_argument("--data", metavar="DIR", help="corpus folder or manifest")
    parser.add_argument("--preset", help="model preset: paper | student | small | tiny | micro | nano | mini")
    parser.add_argument("--config", metavar="YAML", help="config file (see configs/train.yaml)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                        help="override any config key, e.g. --set optim.lr=3e-4 (repeatable)")
    parser.add_argument("--steps", type=int, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, help="global batch size (all processes)")
    parser.add_argument("--segment-seconds", type=float, help="training crop length in seconds")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--seed", type=int, help="seed of the model init and the data order")
    parser.add_argument("--device", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    parser.add_argument("--task-loss", choices=("sisnr", "l1", "mrstft", "l1+mrstft"),
                        help="task loss (default sisnr, every architecture's recipe loss)")
    parser.add_argument("--valid-every", type=int, help="steps between validations")
    parser.add_argument("--checkpoint-every", type=int, help="steps between last.pt writes")
    parser.add_argument("--workers", type=int, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, help="torch threads per process (0: default)")
    parser.add_argument("--init", metavar="CKPT",
                        help="start from the weights of this checkpoint or run folder (fine-tuning; "
                             "same architecture and preset; optimiser and schedule start afresh)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last.pt (same config)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", help="dccrn | convtasnet | dptnet")
    add_common_arguments(parser)


def resolve_config(
    args: argparse.Namespace,
    flags: Mapping[str, str],
    defaults: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """The run's config: saved config (``--resume``) or defaults, then YAML, ``--set``, flags."""
    out = Path(args.out)
    if args.resume:
        saved = out / "config.yaml"
        if not saved.is_file():
            raise DfkdError(f"{out}: nothing to resume (no config.yaml)")
        config = load_run_config(saved)
    else:
        config = TrainConfig()
        for key, value in (defaults or {}).items():
            set_key(config, key, value)
    if args.config:
        apply_mapping(config, load_yaml(args.config), args.config)
    for text in args.set:
        key, value = parse_assignment(text)
        set_key(config, key, value)
    for dest, key in flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            set_key(config, key, value)
    if args.no_progress:
        config.progress = False
    return config


def run(args: argparse.Namespace) -> int:
    from ..training.allocator import keep_freed_memory
    from ..training.run import run_training

    config = resolve_config(args, {"arch": "model.arch", **COMMON_FLAGS})
    if config.kd.method != "none" and not args.resume:
        raise DfkdError(f"dfkd train trains on the task loss alone; use dfkd distill for "
                        f"kd.method={config.kd.method!r}")
    keep_freed_memory()  # ~1.1x faster steps on a CPU (training/allocator.py)
    out = run_training(config, args.out, resume=args.resume)
    print(f"dfkd train: run written to {out}")
    return 0

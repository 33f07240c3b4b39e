"""Train a model or distil a student: set a run up, check every input, then hand over to the loop.

``run_training(config, out_dir, resume=...)`` is the API behind ``dfkd train`` and ``dfkd distill``
(and the experiment grid, which turns each cell into a :class:`TrainConfig` first). Everything a user can get wrong is
checked before the first step and raised as a :class:`~dfkd.errors.DfkdError`: unknown config keys,
a missing or corrupt teacher (any kind of :mod:`dfkd.distill.teachers`), a teacher of another
sample rate, a student seed equal to the teacher's (same family), a run folder that already holds a run, too little data.

Seeds (method.md, "Decisions that follow"): a student must not share its teacher's seed, since the
shared seed would start it from the teacher's first filters. ``dfkd distill`` without ``--seed``
uses the teacher's seed + 1; an explicit seed equal to the teacher's is an error. Teachers loaded
from asteroid checkpoints carry no seed, so no check applies to them.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here with
NCCL on CUDA and gloo on CPU; ``batch_size`` stays the global batch.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..checkpoint import load_model, read_checkpoint, resolve_checkpoint
from ..distill.methods import KDLoss, make_kd_loss
from ..errors import DfkdError
from ..files import folder_lock, remove_stale_temps, write_text
from ..losses import make_task_loss
from ..distill.teacher_cache import CachedTeacherDataset, TeacherCache, default_cache_dir, supports_cache
from ..distill.teachers import EnhancedFolder, TeacherSource, load_teacher_source
from .config import (
    KD_OPTION_KEYS,
    RESUMABLE_KEYS,
    TrainConfig,
    differing_keys,
    dump_yaml,
    load_run_config,
    unused_kd_keys,
    validate,
)
from .batches import build_datasets, load_validation_set
from .schedule import two_step_schedule
from .trainer import DistContext, Trainer

def kd_loss_from_config(config: TrainConfig) -> KDLoss:
    """The KD loss a config asks for (unknown methods and bad options raise DfkdError)."""
    kd = config.kd
    options = {opt: getattr(kd, key) for key, opt in KD_OPTION_KEYS.get(kd.method, {}).items()}
    return make_kd_loss(kd.method, kd.weight, **options)


def load_teacher(spec: str | os.PathLike, sample_rate: int = 16000) -> TeacherSource:
    """The frozen teacher (any kind of :mod:`dfkd.distill.teachers`) and what is known about it."""
    return load_teacher_source(spec, sample_rate)


def init_weights(model: nn.Module, spec: str | os.PathLike) -> dict[str, Any]:
    """Copy the weights of a checkpoint into ``model`` (``model.init``: fine-tuning a trained model).

    Only the weights travel: the optimiser, the schedule and the step count start afresh, so a
    long run can be finished with a new learning-rate decay. The checkpoint must hold the same
    architecture with the same tensor shapes.
    """
    path = resolve_checkpoint(spec)
    source = load_model(path)
    if source.ARCH != model.ARCH:
        raise DfkdError(f"{path}: --init holds a {source.ARCH}, but this run trains a {model.ARCH}")
    want, have = model.state_dict(), source.state_dict()
    mismatched = sorted(k for k in want.keys() | have.keys()
                        if k not in want or k not in have or want[k].shape != have[k].shape)
    if mismatched:
        raise DfkdError(f"{path}: --init weights do not fit this {model.ARCH} preset "
                        f"({len(mismatched)} tensors differ, e.g. {mismatched[0]})")
    model.load_state_dict(have)
    return {"init_from": str(path)}


def init_distributed(device_spec: str) -> DistContext:
    """Join the ``torchrun`` process group when there is one (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_spec != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def resolve_device(spec: str, ctx: DistContext) -> torch.device:
    """``auto``: CUDA when present (one GPU per DDP process), else CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DfkdError(f"device {spec!r} asked for, but CUDA is not available here")
        return torch.device("cuda", ctx.local_rank if ctx.world_size > 1 else (torch.device(spec).index or 0))
    if spec != "cpu":
        raise DfkdError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
    return torch.device("cpu")


def _barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        torch.distributed.barrier()


def absolute_paths(config: TrainConfig) -> TrainConfig:
    """Make the config's paths absolute (in place): config.yaml then resumes from any folder."""
    def absolute(value: str | None) -> str | None:
        return str(Path(value).expanduser().absolute()) if value else value

    config.data.root = absolute(config.data.root)
    config.kd.teacher = absolute(config.kd.teacher)
    config.kd.cache_dir = absolute(config.kd.cache_dir)
    config.model.init = absolute(config.model.init)
    return config


def prepare_run_folder(config: TrainConfig, out_dir: Path, resume: bool) -> dict[str, Any] | None:
    """Check the run folder against ``resume``; returns the ``last.pt`` payload when resuming."""
    last = out_dir / "last.pt"
    if not resume:
        if last.is_file() or (out_dir / "best.pt").is_file():
            raise DfkdError(
                f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        return None
    if not last.is_file():
        raise DfkdError(f"{out_dir}: nothing to resume (no last.pt)")
    saved_path = out_dir / "config.yaml"
    if saved_path.is_file():
        saved = absolute_paths(load_run_config(saved_path))
        unused = unused_kd_keys(config.kd.method)
        changed = [k for k in differing_keys(saved, config)
                   if k not in RESUMABLE_KEYS and k not in unused]
        if "kd.teacher" in changed and saved.kd.teacher and config.kd.teacher:
            # the same teacher at another path (another checkout or machine, e.g. a run begun on
            # a GPU box): allowed here, and run_training checks the teacher's fingerprint instead
            changed.remove("kd.teacher")
        if changed:
            raise DfkdError(
                f"{out_dir}: a resumed run keeps its configuration, but {', '.join(changed)} differ "
                f"from {saved_path} (only {', '.join(sorted(RESUMABLE_KEYS))} may change)"
            )
    return read_checkpoint(last)


def run_training(config: TrainConfig, out_dir: str | os.PathLike, resume: bool = False) -> Path:
    """Train (``kd.method`` none, no teacher needed) or distil; returns the run folder."""
    out_dir = Path(out_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 holds the folder for the job
        return _run_training(config, out_dir, resume)
    with folder_lock(out_dir, "another `dfkd train`/`distill` run"):
        return _run_training(config, out_dir, resume)


def _run_training(config: TrainConfig, out_dir: Path, resume: bool) -> Path:
    """:func:`run_training` once the folder is this process's."""
    validate(config)
    kd = kd_loss_from_config(config)
    config.kd.weight = kd.weight  # config.yaml records the lambda actually used
    task_loss = make_task_loss(config.task_loss)
    absolute_paths(config)
    payload = prepare_run_folder(config, out_dir, resume)
    saved_info = (payload or {}).get("run_info") or {}
    two_step = two_step_schedule(config.kd.two_step, config.kd.two_step_then, config.steps,
                                 saved_info.get("two_step"))
    if two_step is not None and kd.weight == 0:
        raise DfkdError("kd.two_step with a KD weight of 0: step one would train on nothing")
    for stale in remove_stale_temps(out_dir):  # half-written files of an interrupted run
        print(f"dfkd: removed {stale}, left by an interrupted write", file=sys.stderr)
    ctx = init_distributed(config.device)
    device = resolve_device(config.device, ctx)
    if config.deadline is not None and ctx.world_size > 1:
        raise DfkdError("deadline: only single-process runs stop at a deadline (the processes of "
                        "a torchrun job would not stop at the same step)")
    if config.threads > 0:
        torch.set_num_threads(config.threads)

    teacher, info, outputs = None, {}, None
    if kd.needs_teacher and not config.kd.teacher:
        raise DfkdError(f"KD method {kd.name!r} needs a teacher: pass --teacher RUN_OR_CHECKPOINT")
    if config.kd.teacher:
        source = load_teacher(config.kd.teacher, config.data.sample_rate)
        teacher, info, outputs = source.model, source.info, source.outputs
        # Output-level KD compares waveforms only, so a teacher of another family (or none of
        # ours) may teach; the seed rule guards against shared first filters, a same-family risk.
        same_family = info.get("teacher_arch") == config.model.arch
        if same_family and info["teacher_seed"] is not None and info["teacher_seed"] == config.seed:
            raise DfkdError(
                f"student seed {config.seed} equals the teacher's seed: a shared seed starts the "
                "student from the teacher's first filters; choose another --seed"
            )
        if not kd.needs_teacher:
            teacher, outputs = None, None  # `none` students: the teacher only fixed arch and seed
        saved_print = saved_info.get("teacher_fingerprint")
        if payload is not None and saved_print and saved_print != info.get("teacher_fingerprint"):
            raise DfkdError(f"{out_dir}: a resumed run keeps its teacher, but {config.kd.teacher} is "
                            f"another model (fingerprint {info.get('teacher_fingerprint')}, the run "
                            f"was started with {saved_print})")

    torch.manual_seed(config.seed)
    model = models.build(config.model.arch, config.model.preset, **config.model.overrides)
    if teacher is not None and getattr(teacher, "sample_rate", None) != getattr(model, "sample_rate", None):
        raise DfkdError(
            f"the teacher works at {getattr(teacher, 'sample_rate', '?')} Hz and the student at "
            f"{getattr(model, 'sample_rate', '?')} Hz"
        )
    if getattr(model, "sample_rate", config.data.sample_rate) != config.data.sample_rate:
        raise DfkdError(
            f"{config.model.arch} works at {model.sample_rate} Hz but data.sample_rate is "
            f"{config.data.sample_rate}"
        )
    init_info = {}
    if config.model.init and payload is None:  # a resumed run already holds its own weights
        init_info = init_weights(model, config.model.init)
    if config.batch_size % ctx.world_size:
        raise DfkdError(f"batch size {config.batch_size} is not divisible by {ctx.world_size} processes")

    train_set, valid_dataset = build_datasets(config)
    valid_set = load_validation_set(valid_dataset, config.data.valid_clips)
    if outputs is not None:
        train_set = _with_teacher_folder(config, outputs, train_set)
    elif teacher is not None and config.kd.cache_teacher:
        train_set = _with_teacher_cache(config, teacher, info["teacher_fingerprint"], train_set,
                                        device, ctx)

    run_info = {
        "name": out_dir.name, "arch": config.model.arch, "preset": config.model.preset,
        "params": models.count_params(model), "method": kd.name, "kd_weight": kd.weight,
        "kd_options": kd.options(), "task_loss": config.task_loss, "seed": config.seed,
        "world_size": ctx.world_size, "device": str(device), **info, **init_info,
        **({"two_step": two_step.info()} if two_step is not None else {}),
    }
    trainer = Trainer(config, model, kd, task_loss, teacher, train_set, valid_set, out_dir,
                      device, ctx, run_info, two_step)
    if payload is not None:
        trainer.restore(payload)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        # the deadline belongs to this call, not to the run: a later --resume gets none
        write_text(out_dir / "config.yaml", dump_yaml(dataclasses.replace(config, deadline=None)))
    try:
        trainer.run()
    finally:
        if ctx.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return out_dir


def _with_teacher_folder(config: TrainConfig, outputs: EnhancedFolder, train_set):
    """Wrap a fixed training set with the crops of a teacher's enhanced files (checked first)."""
    if not supports_cache(train_set):
        raise DfkdError(f"{outputs.folder}: a folder of teacher outputs needs a fixed training set; "
                        f"{config.data.root} is mixed on the fly (give a model file as --teacher)")
    outputs.check(train_set.pairs)
    outputs.cache_dir = train_set.cache_dir  # resampled as the noisy files are
    return CachedTeacherDataset(train_set, outputs)


def _with_teacher_cache(config: TrainConfig, teacher: nn.Module, fingerprint: str, train_set,
                        device, ctx):
    """Wrap a fixed training set with cached whole-utterance teacher outputs (filled if needed)."""
    if not supports_cache(train_set):
        if ctx.is_main:
            print("dfkd: the training set is mixed on the fly; the teacher runs inline "
                  "(--cache-teacher ignored)", file=sys.stderr)
        return train_set
    root = config.kd.cache_dir or default_cache_dir(config.data.root)
    cache = TeacherCache(root, fingerprint, config.data.sample_rate)
    teacher = teacher.to(device)
    cache.fill(teacher, train_set.pairs, device, ctx.rank, ctx.world_size,
               progress=config.progress and ctx.is_main, cache_dir=train_set.cache_dir)
    _barrier(ctx)
    return CachedTeacherDataset(train_set, cache)

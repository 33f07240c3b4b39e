"""A grid cell's :class:`~dfkd.experiment.plan.TrainJob` -> the ``TrainConfig`` of ``dfkd train``.

The experiment is the later stage, so it speaks the training layer's language, never the other way
round: :func:`train_config` builds the plain :class:`~dfkd.training.config.TrainConfig` a job asks
for, :func:`train_job` trains it with :func:`dfkd.training.run.run_training` (resuming from
``run_dir/last.pt`` when a previous call was cut short).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DfkdError
from ..training.config import KD_OPTION_KEYS, TrainConfig, apply_mapping, set_key
from ..training.run import run_training
from ..training.schedule import SCHEDULE_OPTION_KEYS, split_schedule_options
from .plan import TrainJob


def train_config(job: TrainJob) -> TrainConfig:
    """The training configuration of one grid cell.

    ``job.kd_options`` use :func:`dfkd.distill.make_kd_loss`'s option names (``adapter``,
    ``norm``...) plus the two-step schedule's ``two_step`` / ``two_step_then``; ``job.options`` are config keys (dotted, or nested like the YAML file).
    """
    config = TrainConfig()
    config.model.arch, config.model.preset = job.arch, job.preset
    config.kd.method = job.method or "none"
    config.kd.weight = job.kd_weight if job.method else None
    config.kd.teacher = job.teacher
    options, schedule = split_schedule_options(job.kd_options or {})
    for option, key in SCHEDULE_OPTION_KEYS.items():
        if option in schedule:
            set_key(config, key, schedule[option])
    for key, option in KD_OPTION_KEYS.get(config.kd.method, {}).items():
        if option in options:
            set_key(config, f"kd.{key}", options.pop(option))
    if options:
        raise DfkdError(f"KD method {config.kd.method!r} has no option(s) {', '.join(options)}")
    config.steps, config.batch_size, config.seed = job.steps, job.batch_size, job.seed
    config.data.root = str(job.data)
    extra = dict(job.options or {})
    dotted = {k: v for k, v in extra.items() if "." in k}
    apply_mapping(config, {k: v for k, v in extra.items() if "." not in k}, "train options")
    for key, value in dotted.items():
        set_key(config, key, value)
    return config


def train_job(job: TrainJob, run_dir: str | os.PathLike) -> Path:
    """Train one cell of the comparison grid into ``run_dir`` (resuming a cut run)."""
    run_dir = Path(run_dir)
    return run_training(train_config(job), run_dir, resume=(run_dir / "last.pt").is_file())

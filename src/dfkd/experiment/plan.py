"""The cells of a comparison grid and where each one lives on disk.

A cell is one model to obtain and score: a teacher (trained in the grid, or a pretrained
checkpoint), a lambda-sweep student (scored on the validation split) or a final student (scored
on the test split). Its training run is identified by a :class:`TrainJob`, everything that
determines the trained weights; the run folder's name ends with a hash of that job, so

* a finished run is found again and reused by any later grid that asks for the same job (a sweep
  run at the chosen lambda with the final steps and a final seed *is* that final run);
* changing anything that matters (steps, data, preset, teacher...) gives a new folder instead of
  silently mixing old and new runs.

Layout under the experiment folder::

    runs/<arch>/teacher-<hash>/                 a teacher trained in the grid
    runs/<arch>/teacher-pretrained-<hash>/      the scores of a pretrained teacher checkpoint
    runs/<arch>/<variant>/lam<λ>-seed<s>-<steps>steps-<hash>/
        config.yaml last.pt best.pt history.json   (written by the trainer)
        trained.json                               (written here when training returned)
        eval-valid-<hash>/ eval-test-<hash>/       (per_file.csv, summary.json, done.json; the
                                                    hash: data, metrics and clips scored)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..files import file_digest
from .config import ExperimentConfig, Variant, flat_options

PRETRAINED_DIR = Path("pretrained")
# Trainer options that change speed or logging, never the trained weights (dfkd.training.config's
# RESUMABLE_KEYS, plus the progress bar): left out of a run's identity, so that turning them
# does not make the grid train everything again.
RUNTIME_OPTIONS = frozenset({
    "progress", "threads", "device", "log_every", "data.num_workers", "kd.cache_dir",
    "checkpoint_every", "deadline",
})


@dataclass(frozen=True)
class TrainJob:
    """Everything that determines a trained model; the trainer is called with one of these.

    Attributes:
        arch, preset: the model to build.
        method: KD method, or ``None`` for a teacher trained on the task loss alone.
        kd_weight: lambda (``None`` for teachers; 0 for ``none``).
        kd_options: options of the KD method (``adapter``...).
        teacher: teacher checkpoint path (students only).
        teacher_id: what the teacher is (its run hash or the checkpoint's digest): part of the
            identity, so that a retrained teacher means new student runs.
        steps, batch_size, seed: the training budget and randomness.
        data: the corpus folder.
        options: further trainer options from the config's ``train`` section, passed through.
    """

    arch: str
    preset: str
    method: str | None
    kd_weight: float | None
    kd_options: dict[str, Any]
    teacher: str | None
    teacher_id: str | None
    steps: int
    batch_size: int
    seed: int
    data: str
    options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        # the teacher's path is left out: moving the experiment folder must not invalidate runs
        ident = asdict(self)
        ident.pop("teacher")
        ident["kd_options"] = identity_kd_options(self.method, self.kd_options)
        ident["options"] = {k: v for k, v in flat_options(self.options).items()
                            if k not in RUNTIME_OPTIONS}
        return ident

    def key(self) -> str:
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def identity_kd_options(method: str | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """The KD options that name a run: as given, with every option of
    :data:`~dfkd.distill.methods.LEGACY_DEFAULTS` the method has resolved to the value it trains
    with, left out at its legacy value (as run names always left it out) and named otherwise.

    So a run named before an option's default changed keeps its name only where it still trains
    the same way: with a new default, a cell that does not name the option gets a new run.
    """
    from ..distill.methods import LEGACY_DEFAULTS, kd_options

    named = dict(options)
    if not method or method == "none":
        return named
    defaults = {o.option: o.default for o in kd_options(method)}
    for option, legacy in LEGACY_DEFAULTS.items():
        if option in defaults:
            value = named.pop(option, defaults[option])
            if value != legacy:
                named[option] = value
    return named


@dataclass(frozen=True)
class Cell:
    """One model of the grid.

    Attributes:
        kind: ``teacher``, ``sweep`` or ``final``.
        arch: architecture.
        model: row label: ``teacher`` or the variant's name.
        seed: training seed (``None`` for a pretrained teacher).
        run_dir: the run folder (training outputs and evaluations).
        job: the training job (``None`` for a pretrained teacher).
        checkpoint: a pretrained checkpoint to score instead of training.
        eval_split: the split this cell is scored on (``valid`` for sweeps, ``test`` otherwise).
        kd_weight: lambda of the run (``None`` for teachers).
        eval_tag: hash of how it is scored (data, metrics, clips): other settings, other scores.
    """

    kind: str
    arch: str
    model: str
    seed: int | None
    run_dir: Path
    job: TrainJob | None = None
    checkpoint: Path | None = None
    eval_split: str = "test"
    kd_weight: float | None = None
    eval_tag: str = ""

    @property
    def eval_dir(self) -> Path:
        return self.run_dir / f"eval-{self.eval_split}-{self.eval_tag}"

    @property
    def model_path(self) -> Path:
        """What to load: the pretrained file, or the run folder (its ``best.pt``)."""
        return self.checkpoint if self.checkpoint is not None else self.run_dir

    def describe(self) -> str:
        lam = "" if self.kd_weight is None or self.model == "none" else f" λ={self.kd_weight:g}"
        seed = "" if self.seed is None else f" seed {self.seed}"
        return f"{self.arch} {self.model}{lam}{seed} ({self.kind})"


SWEEP_METRIC = "si_snr"  # method.md: lambda is picked by validation SI-SNR
HELDOUT = "heldout"  # the split name of scores on `evaluation.heldout`'s test split


def evaluation_tag(config: ExperimentConfig, split: str, data: str) -> str:
    """A short hash of what a score depends on besides the model."""
    if split == "valid":
        what = {"split": split, "data": data, "metrics": [SWEEP_METRIC], "clips": None}
    else:
        what = {"split": split, "data": data, "metrics": config.evaluation.metrics,
                "clips": config.evaluation.test_clips}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]


def heldout_cells(config: ExperimentConfig, cells: Sequence[Cell], heldout: str) -> list[Cell]:
    """The same models scored on the test split of the ``heldout`` corpus (speakers and noise kinds
    the training never saw), in ``eval-heldout-<hash>/`` beside their test scores."""
    tag = evaluation_tag(config, HELDOUT, heldout)
    return [replace(c, eval_split=HELDOUT, eval_tag=tag) for c in cells]


def pick_clips(count: int, available: int) -> list[int]:
    """``count`` indices spread evenly over ``available`` clips (not just the first speaker's)."""
    if count <= 0 or available <= 0:
        return []
    count = min(count, available)
    return sorted({int(round(i)) for i in np.linspace(0, available - 1, count)})



def pretrained_path(config: ExperimentConfig, arch: str,
                    roots: Sequence[Path] = (Path("."),)) -> Path | None:
    """The pretrained teacher checkpoint to use for ``arch``, or ``None`` to train one.

    ``teacher.pretrained: auto`` uses ``pretrained/<arch>_<preset>.pt`` under the first of ``roots``
    that has it (the demo teachers, design.md); ``none`` always trains; any other string is a path
    template with ``{arch}`` and ``{preset}``, relative to the first root.
    """
    setting = config.teacher.pretrained
    if not setting or str(setting).lower() in ("none", "false", "no"):
        return None
    if str(setting).lower() == "auto":
        name = f"{arch}_{config.teacher.preset}.pt"
        return next((r / PRETRAINED_DIR / name for r in roots if (r / PRETRAINED_DIR / name).is_file()), None)
    from ..errors import DfkdError

    from ..checkpoint import resolve_checkpoint

    candidate = Path(roots[0]) / str(setting).format(arch=arch, preset=config.teacher.preset)
    if candidate.is_dir():  # a run folder: best.pt, else last.pt, with the other commands' message
        return resolve_checkpoint(candidate)
    if not candidate.is_file():
        raise DfkdError(
            f"teacher.pretrained: {candidate}: checkpoint not found (for {arch}); give a checkpoint "
            "or run folder, `auto` for the demo teachers in pretrained/, or `none` to train the "
            "teachers in the grid (hours on a CPU)")
    return candidate


def teacher_cell(config: ExperimentConfig, arch: str, out: Path, data: str,
                 roots: Sequence[Path] = (Path("."),)) -> Cell:
    """The teacher of ``arch``: a pretrained checkpoint when one is configured, else a grid run."""
    pretrained = pretrained_path(config, arch, roots)
    if pretrained is not None:
        from ..checkpoint import model_from_checkpoint_dict, read_checkpoint
        from ..errors import DfkdError

        data = read_checkpoint(pretrained)
        # Load it now, for --dry-run as for the real run: a bare state_dict, a header that does not
        # match the weights or a teacher of another architecture stops the grid before any file.
        teacher = model_from_checkpoint_dict(data, source=str(pretrained))
        if teacher.ARCH != arch:
            raise DfkdError(f"{pretrained}: the teacher for {arch} is a {teacher.ARCH}; a student "
                            "is distilled from a teacher of its own architecture")
        seed = data.get("train_seed")  # None for asteroid checkpoints
        if seed is not None and int(seed) in set(config.seeds) | set(config.sweep_seeds):
            raise DfkdError(f"{pretrained} was trained with seed {seed}, which is also a student seed "
                            "of this grid; students must not share their teacher's seed (method.md)")
        digest = file_digest(pretrained, 10)
        return Cell("teacher", arch, "teacher", None if seed is None else int(seed),
                    out / "runs" / arch / f"teacher-pretrained-{digest}", checkpoint=pretrained.resolve(),
                    eval_tag=evaluation_tag(config, "test", data))
    t = config.teacher
    job = TrainJob(arch, t.preset, None, None, {}, None, None, t.steps, t.batch_size, t.seed, data,
                   dict(config.train_options))
    return Cell("teacher", arch, "teacher", t.seed, out / "runs" / arch / f"teacher-{job.key()}", job,
                eval_tag=evaluation_tag(config, "test", data))


def teacher_id(teacher: Cell) -> str:
    return teacher.run_dir.name


def teacher_checkpoint(teacher: Cell) -> Path:
    if teacher.checkpoint is not None:
        return teacher.checkpoint
    return teacher.run_dir / "best.pt"


def default_weight(variant: Variant) -> float:
    from ..distill.methods import default_kd_weight

    if variant.kd_weight is not None:
        return variant.kd_weight
    return default_kd_weight(variant.method, variant.options)


def student_cell(config: ExperimentConfig, arch: str, variant: Variant, kd_weight: float, seed: int,
                 steps: int, kind: str, teacher: Cell, out: Path, data: str) -> Cell:
    """A student run of ``variant`` at lambda ``kd_weight``; ``none`` ignores the teacher."""
    kd = variant.is_kd
    job = TrainJob(
        arch, config.student.preset_for(arch), variant.method, float(kd_weight) if kd else 0.0,
        dict(sorted(variant.options.items())), str(teacher_checkpoint(teacher)) if kd else None,
        teacher_id(teacher) if kd else None, steps, config.student.batch_size, seed, data,
        dict(config.train_options),
    )
    folder = f"lam{job.kd_weight:g}-seed{seed}-{steps}steps-{job.key()}"
    split = "valid" if kind == "sweep" else "test"
    return Cell(kind, arch, variant.name, seed, out / "runs" / arch / variant.name / folder, job,
                eval_split=split, kd_weight=job.kd_weight, eval_tag=evaluation_tag(config, split, data))


def sweep_weights(config: ExperimentConfig, variant: Variant) -> list[float]:
    """The lambda candidates of a KD variant: the configured factors times its default."""
    return _scaled(config.sweep.factors, default_weight(variant))


def _scaled(factors: Sequence[float], centre: float) -> list[float]:
    """``factors`` x ``centre``, rounded so that equal lambdas compare equal, sorted, once each."""
    return sorted({round(float(f) * centre, 10) for f in factors})


def sweep_extension(config: ExperimentConfig, variant: Variant, means: Mapping[float, float]
                    ) -> float | None:
    """The next lambda to try above a finished sweep, or ``None`` when its top has been found.

    A sweep whose best candidate is its largest lambda, ahead of the next smaller one by more than
    ``sweep.extend_margin_db``, is still rising where it ends (the study's Conv-TasNet sweep:
    `subband` 4.38 / 4.91 / 5.23 dB at 1x / 3x / 10x its default), and choosing that end point would
    understate the method. The next factor of ``sweep.extend`` above it is tried then, one at a
    time, under the same rule for every method. The margin keeps seed noise from extending a flat
    sweep: neighbouring candidates of the DPTNet sweep differ by up to 0.1 dB without a trend.
    Only upwards: below the sweep a KD term fades into ``none``, which the table has anyway.

    Args:
        means: lambda -> mean validation score of every candidate swept so far.
    """
    if len(means) < 2:
        return None
    top, below = sorted(means)[-2:][::-1]
    if means[top] < max(means.values()) or not means[top] - means[below] > config.sweep.extend_margin_db:
        return None
    return next((lam for lam in _scaled(config.sweep.extend, default_weight(variant)) if lam > top),
                None)


def sweep_cells(config: ExperimentConfig, arch: str, teacher: Cell, out: Path, data: str) -> list[Cell]:
    """Every lambda candidate x sweep seed of every KD variant (``none`` has nothing to tune)."""
    return [student_cell(config, arch, v, lam, seed, config.sweep_steps, "sweep", teacher, out, data)
            for v in config.variants if v.is_kd
            for lam in sweep_weights(config, v) for seed in config.sweep_seeds]


def final_cells(config: ExperimentConfig, arch: str, teacher: Cell, chosen: dict[str, float],
                out: Path, data: str) -> list[Cell]:
    """Every variant x seed at its chosen lambda, with the full student budget."""
    return [student_cell(config, arch, v, chosen.get(v.name, default_weight(v)) if v.is_kd else 0.0,
                         seed, config.student.steps, "final", teacher, out, data)
            for v in config.variants for seed in config.seeds]


def total_steps(config: ExperimentConfig, teachers_trained: int) -> dict[str, int]:
    """Training steps the grid asks for (before reuse), for budget arithmetic and ``--dry-run``."""
    kd = [v for v in config.variants if v.is_kd]
    archs = len(config.architectures)
    sweep = archs * sum(len(sweep_weights(config, v)) for v in kd) * len(config.sweep_seeds) * config.sweep_steps
    final = archs * len(config.variants) * len(config.seeds) * config.student.steps
    return {"teacher": teachers_trained * config.teacher.steps, "sweep": sweep, "final": final}

"""The configuration of a comparison grid (``configs/*.yaml``), read into dataclasses and checked.

One file fixes everything a fair comparison needs to hold constant (method.md): the same
architectures, data, student preset, steps, batch size and seeds for every method, and the same
KD-weight (lambda) sweep for every KD method. Every problem is reported as a
:class:`~dfkd.errors.DfkdError` naming the key, before any training starts.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import DfkdError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
# Trainer keys the grid sets per run: the `train:` section may not change them, or one method
# could get other steps, data or seeds than another. Every KD option's key is one of them (the
# method classes declare them, dfkd.training.config.KD_OPTION_DEFAULTS).
def _grid_keys() -> frozenset[str]:
    from ..training.config import KD_OPTION_DEFAULTS

    fixed = {"model.arch", "model.preset", "kd.method", "kd.teacher", "kd.weight", "steps",
             "batch_size", "seed", "data.root"}
    return frozenset(fixed | {f"kd.{key}" for key in KD_OPTION_DEFAULTS})


GRID_KEYS = _grid_keys()


def flat_options(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"valid_clips": 16}}`` -> ``{"data.valid_clips": 16}`` (the trainer takes both)."""
    flat: dict[str, Any] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and key != "overrides":
            flat.update(flat_options(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def check_train_options(options: Mapping[str, Any], where: str) -> None:
    """Every ``train:`` key must be a trainer key (configs/train.yaml) that the grid does not own."""
    from ..training.config import TrainConfig, set_key

    scratch = TrainConfig()
    for key, value in flat_options(options).items():
        if key in GRID_KEYS:
            raise DfkdError(f"{where}: `train.{key}` is set by the grid for each run (use the "
                            "`teacher`, `student`, `sweep` or `methods` sections)")
        try:
            if key.startswith("model.overrides"):
                raise DfkdError("model overrides would give students of different sizes")
            set_key(scratch, key, value)
        except DfkdError as err:
            raise DfkdError(f"{where}: `train.{key}`: {err}") from None


@dataclass(frozen=True)
class Variant:
    """One student row of the table: a KD method with its options (``dfkd`` with another adapter...).

    Attributes:
        name: the row label and folder name (``dfkd-rolloff``).
        method: the KD method (``none``, ``output``, ``sisnr``, ``spectral``, ``subband``, ``dfkd``).
        options: options of that method (``adapter``, ``bands``...), see :func:`dfkd.distill.methods.make_kd_loss`.
        kd_weight: the centre of the lambda sweep (default: the method's default lambda).
    """

    name: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)
    kd_weight: float | None = None

    @property
    def is_kd(self) -> bool:
        return self.method != "none"


@dataclass(frozen=True)
class TeacherConfig:
    """How each architecture's teacher is obtained."""

    preset: str = "small"
    pretrained: str | None = "auto"  # "auto": pretrained/<arch>_<preset>.pt if it exists; a path; or None
    steps: int = 20000
    batch_size: int = 8
    seed: int = 0


@dataclass(frozen=True)
class StudentConfig:
    """What every student is trained with, whatever its method."""

    preset: str = "tiny"
    steps: int = 5000
    batch_size: int = 8
    # per-architecture presets overriding `preset` (e.g. a further-compressed student where the
    # teacher leads `preset` by less than the 2 dB that method.md asks for)
    presets: Mapping[str, str] | None = None

    def preset_for(self, arch: str) -> str:
        """The student preset of ``arch``."""
        return str((self.presets or {}).get(arch, self.preset))


@dataclass(frozen=True)
class SweepConfig:
    """The lambda sweep every KD method gets (method.md: at least {0.3, 1, 3} x the default)."""

    factors: tuple[float, ...] = (0.3, 1.0, 3.0)
    steps: int | None = None  # None: the students' steps
    seeds: tuple[int, ...] | None = None  # None: the first student seed
    # factors above `factors`, tried one at a time while a method's best lambda is its largest and
    # beats the next smaller one by more than `extend_margin_db` (:func:`plan.sweep_extension`)
    extend: tuple[float, ...] = ()
    extend_margin_db: float = 0.1


@dataclass(frozen=True)
class EvaluationConfig:
    """How models are scored and measured."""

    metrics: tuple[str, ...] | None = None  # None: dfkd.evaluation.metrics.DEFAULT_METRICS
    test_clips: int | None = None  # score this many test clips, evenly spaced; None: all
    workers: int | None = None  # scoring processes; None: one per core, 0: in-process
    complexity: bool = True  # measure parameters, MACs and CPU real-time factor of every model
    complexity_seconds: float = 1.0  # audio length for MACs and real-time factor
    rtf_threads: int = 1  # CPU threads for the real-time factor (an on-device core)
    heldout: str | None = None  # a second corpus (`dfkd corpus heldout`) whose test split scores
    #                             the teacher and every final run too: results in <out>/heldout/


@dataclass(frozen=True)
class ReportConfig:
    """What the report shows."""

    clips: int = 3
    rank_metric: str = "si_snri"
    lead_target_db: float = 2.0


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole comparison grid; see ``configs/demo.yaml`` for every key, commented."""

    name: str
    architectures: tuple[str, ...]
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    sweep: SweepConfig = SweepConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    report: ReportConfig = ReportConfig()
    data: str | None = None
    train_options: dict[str, Any] = field(default_factory=dict)
    parallel_runs: int = 1
    source: str | None = None

    @property
    def sweep_steps(self) -> int:
        return self.sweep.steps or self.student.steps

    @property
    def sweep_seeds(self) -> tuple[int, ...]:
        return self.sweep.seeds or self.seeds[:1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _section(raw: Mapping[str, Any], key: str, cls: type, where: str) -> Any:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise DfkdError(f"{where}: `{key}` must be a mapping, not {type(value).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(value) - known)
    if unknown:
        raise DfkdError(f"{where}: unknown key(s) {', '.join(f'{key}.{k}' for k in unknown)} "
                        f"(known: {', '.join(sorted(known))})")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        return cls(**fixed)
    except TypeError as err:
        raise DfkdError(f"{where}: `{key}`: {err}") from err


def _variant(entry: Any, where: str) -> Variant:
    if isinstance(entry, str):
        return Variant(name=entry, method=entry)
    if not isinstance(entry, Mapping) or "method" not in entry:
        raise DfkdError(f"{where}: each `methods` entry is a method name or a mapping with `method`")
    entry = dict(entry)
    method = str(entry.pop("method"))
    name = str(entry.pop("name", method))
    weight = entry.pop("kd_weight", None)
    return Variant(name=name, method=method, options=entry,
                   kd_weight=None if weight is None else float(weight))


def _int_list(value: Any, key: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, int) for v in value):
        raise DfkdError(f"{where}: `{key}` must be a non-empty list of integers, not {value!r}")
    return tuple(value)


def parse_config(raw: Mapping[str, Any], where: str = "config") -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` from a parsed YAML mapping."""
    from ..distill.methods import KD_METHODS, make_kd_loss
    from ..training.schedule import check_two_step, split_schedule_options
    from ..evaluation.metrics import DEFAULT_METRICS, check_metrics
    from ..models import ARCHITECTURES, preset_config

    if not isinstance(raw, Mapping):
        raise DfkdError(f"{where}: expected a mapping at the top level")
    known = {"name", "data", "architectures", "seeds", "methods", "teacher", "student", "sweep",
             "evaluation", "report", "train", "parallel_runs"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DfkdError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    archs = tuple(raw.get("architectures") or ())
    if not archs:
        raise DfkdError(f"{where}: `architectures` must list at least one of {', '.join(ARCHITECTURES)}")
    variants = tuple(_variant(e, where) for e in (raw.get("methods") or ()))
    config = ExperimentConfig(
        name=str(raw.get("name") or Path(where).stem), architectures=archs,
        seeds=_int_list(raw.get("seeds"), "seeds", where), variants=variants,
        teacher=_section(raw, "teacher", TeacherConfig, where),
        student=_section(raw, "student", StudentConfig, where),
        sweep=_section(raw, "sweep", SweepConfig, where),
        evaluation=_section(raw, "evaluation", EvaluationConfig, where),
        report=_section(raw, "report", ReportConfig, where),
        data=raw.get("data"), train_options=dict(raw.get("train") or {}),
        parallel_runs=raw.get("parallel_runs", 1), source=where,
    )
    check_train_options(config.train_options, where)
    if not isinstance(config.parallel_runs, int) or config.parallel_runs < 1:
        raise DfkdError(f"{where}: `parallel_runs` must be a positive integer, not {config.parallel_runs!r}")
    presets = config.student.presets
    if presets is not None and (not isinstance(presets, Mapping)
                                or not set(presets) <= set(ARCHITECTURES)):
        raise DfkdError(f"{where}: `student.presets` must map architecture names "
                        f"({', '.join(ARCHITECTURES)}) to presets, not {presets!r}")
    for arch in archs:
        preset_config(arch, config.teacher.preset)  # raises a clear error for unknown names
        preset_config(arch, config.student.preset_for(arch))
    names = [v.name for v in variants]
    if "none" not in [v.method for v in variants]:
        raise DfkdError(f"{where}: `methods` must include `none`: every KD method is compared with it")
    for variant in variants:
        if not _NAME.match(variant.name) or variant.name == "teacher":
            raise DfkdError(f"{where}: method name {variant.name!r} must be a plain folder name, not 'teacher'")
        if names.count(variant.name) > 1:
            raise DfkdError(f"{where}: method name {variant.name!r} appears twice; give variants a `name`")
        if variant.method not in KD_METHODS:
            raise DfkdError(f"{where}: unknown KD method {variant.method!r} (choose from {', '.join(KD_METHODS)})")
        kd_options, schedule = split_schedule_options(variant.options)
        make_kd_loss(variant.method, variant.kd_weight, **kd_options)  # checks the options
        try:
            check_two_step(float(schedule.get("two_step", 0.0)),
                           str(schedule.get("two_step_then", "task+kd")), variant.method)
        except (DfkdError, TypeError, ValueError) as err:
            raise DfkdError(f"{where}: method {variant.name!r}: {err}") from None
    if config.teacher.seed in config.seeds or config.teacher.seed in config.sweep_seeds:
        # method.md: a shared seed starts the student from the teacher's first filters
        raise DfkdError(f"{where}: the teacher seed {config.teacher.seed} must not be a student seed")
    if config.sweep.seeds is not None:
        _int_list(list(config.sweep.seeds), "sweep.seeds", where)
    for key, value in (("student.steps", config.student.steps), ("teacher.steps", config.teacher.steps),
                       ("sweep.steps", config.sweep_steps), ("student.batch_size", config.student.batch_size),
                       ("teacher.batch_size", config.teacher.batch_size)):
        if not isinstance(value, int) or value < 1:
            raise DfkdError(f"{where}: `{key}` must be a positive integer, not {value!r}")
    _check_sweep_factors(config.sweep, where)
    evaluated = check_metrics(config.evaluation.metrics or DEFAULT_METRICS)
    if config.report.rank_metric not in evaluated:
        raise DfkdError(f"{where}: `report.rank_metric` {config.report.rank_metric!r} is not evaluated")
    return config


def _check_sweep_factors(sweep: SweepConfig, where: str) -> None:
    def numbers(values: Any) -> list[float] | None:
        try:
            out = [float(v) for v in values]
        except (TypeError, ValueError):
            return None
        return out if all(math.isfinite(v) and v > 0 for v in out) else None

    factors, extend = numbers(sweep.factors), numbers(sweep.extend)
    if not factors:
        raise DfkdError(f"{where}: `sweep.factors` must be positive numbers")
    if extend is None or extend != sorted(set(extend)) or (extend and extend[0] <= max(factors)):
        raise DfkdError(f"{where}: `sweep.extend` must be increasing positive numbers above the "
                        f"largest of `sweep.factors` ({max(factors):g}), not {list(sweep.extend)!r}")
    margin = sweep.extend_margin_db
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or margin < 0:
        raise DfkdError(f"{where}: `sweep.extend_margin_db` must be a number >= 0, not {margin!r}")


def load_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read and check a YAML experiment configuration."""
    path = Path(path)
    if not path.is_file():
        raise DfkdError(f"{path}: experiment configuration not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise DfkdError(f"{path}: not valid YAML ({err})") from err
    return parse_config(raw or {}, where=str(path))

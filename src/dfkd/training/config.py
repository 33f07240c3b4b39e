"""Configuration of a training or distillation run: dataclasses, YAML files and CLI overrides.

Precedence, lowest first: the dataclass defaults below (mirrored, with comments, in
``configs/train.yaml``), a ``--config`` YAML file, ``--set key=value`` overrides (dotted keys, values
parsed as YAML), then dedicated flags such as ``--lr``. Every key is checked: a key that does not
exist is a :class:`~dfkd.errors.DfkdError` before anything is built. The resolved configuration is
written to ``<run>/config.yaml`` and is enough to rerun or resume the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import DfkdError
from .schedule import check_two_step


@dataclass
class ModelConfig:
    """The model to train (the student, when distilling)."""

    arch: str = "convtasnet"  # dccrn | convtasnet | dptnet
    preset: str = "small"  # paper | student | small | tiny | micro | nano | mini
    overrides: dict[str, Any] = field(default_factory=dict)  # constructor kwargs over the preset
    init: str | None = None  # checkpoint or run folder whose weights start the run (fine-tuning)


@dataclass
class DataConfig:
    """Where the data comes from and how it is cut."""

    root: str = ""  # corpus folder or manifest (any layout dfkd.data.datasets detects)
    sample_rate: int = 16000
    segment_seconds: float = 2.0  # training crop length
    valid_segment_seconds: float = 4.0  # validation crop length (fixed crops, batched)
    valid_clips: int = 64  # size of the fixed validation subset (evenly spaced over the split)
    pesq_clips: int = 8  # clips of that subset also scored with PESQ (slow: keep it small)
    valid_batch_size: int = 8
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)


@dataclass
class OptimConfig:
    """Optimiser, learning-rate schedule and gradient clipping."""

    optimizer: str = "adamw"  # adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  # cosine | constant (both after a linear warm-up)
    warmup_steps: int = 0
    min_lr_ratio: float = 0.05  # final lr / lr of the cosine schedule
    grad_clip: float = 5.0  # max global gradient norm; 0 disables clipping


def _kd_option_fields() -> dict[str, Any]:
    """``kd.*`` key -> default of every option of the package's KD methods (from their classes).

    A key shared by several methods (``scale_fix``, ``adapter``...) is one config key, so its
    default must agree between them: checked here, at import.
    """
    from ..distill.methods import BUILTIN_METHODS, kd_options

    defaults: dict[str, Any] = {}
    for method in sorted(BUILTIN_METHODS, key=lambda m: m != "dfkd"):  # dfkd's keys first, as before
        for option in kd_options(method):
            if option.key in defaults and defaults[option.key] != option.default:
                raise TypeError(f"kd.{option.key}: {method} declares the default {option.default!r}, "
                                f"another method {defaults[option.key]!r}")
            defaults.setdefault(option.key, option.default)
    return defaults


def _kd_option_keys() -> dict[str, dict[str, str]]:
    from ..distill.methods import BUILTIN_METHODS, kd_options

    table = {m: {o.key: o.option for o in kd_options(m)} for m in BUILTIN_METHODS}
    return {m: keys for m, keys in table.items() if keys}


# The ``kd.*`` config keys of each KD method -> the option names of dfkd.distill.make_kd_loss,
# derived from the method classes (KDLoss.config_keys): the grid's cells use the option names.
KD_OPTION_KEYS: dict[str, dict[str, str]] = _kd_option_keys()
KD_OPTION_DEFAULTS: dict[str, Any] = _kd_option_fields()


def _kd_config_class() -> type:
    """:class:`KDConfig`: the teacher, the method, lambda, every method option, the cache."""
    fields: list[tuple[str, Any, Any]] = [
        ("method", str, field(default="none")),  # none | output | sisnr | spectral | ... | dispatch
        ("teacher", str | None, field(default=None)),  # teacher run folder or checkpoint
        ("weight", float | None, field(default=None)),  # lambda; None: the method's default
    ]
    fields += [(key, type(default), field(default=default)) for key, default in KD_OPTION_DEFAULTS.items()]
    fields += [
        ("cache_teacher", bool, field(default=False)),  # store whole-utterance teacher outputs, reuse them
        ("cache_dir", str | None, field(default=None)),  # default: <data root>/.dfkd_teacher_cache
        # the two-step schedule (Kegler et al. 2024; dfkd.training.schedule): any KD method
        ("two_step", float, field(default=0.0)),  # fraction of steps on the KD term alone first; 0: off
        ("two_step_then", str, field(default="task+kd")),  # what step two trains on: task | task+kd
    ]
    doc = ("Knowledge distillation: the teacher, the method and its options (the option keys come "
           "from the method classes of dfkd.distill.methods; configs/train.yaml comments each).")
    return dataclasses.make_dataclass("KDConfig", fields, namespace={"__doc__": doc, "__module__": __name__})


KDConfig = _kd_config_class()


@dataclass
class TrainConfig:
    """One run. ``batch_size`` is the global batch (split evenly across DDP processes)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    task_loss: str = "sisnr"  # sisnr | l1 | mrstft | l1+mrstft
    steps: int = 1000
    stop_after: int | None = None  # end at this step; the LR schedule still spans `steps`
    batch_size: int = 8
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads per process; 0 keeps torch's default
    log_every: int = 10  # steps between history/TensorBoard records
    grad_ratio_every: int = 50  # steps between KD/task gradient-norm ratio measurements; 0: never
    valid_every: int = 200  # steps between validations (and best.pt updates)
    checkpoint_every: int = 100  # steps between last.pt writes
    best_metric: str = "si_snr"  # si_snr | pesq_wb | loss: what best.pt maximises (loss: minimises)
    progress: bool = True  # tqdm progress bar
    deadline: float | None = None  # wall clock (time.time()) at which to save last.pt and stop


SECTIONS = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "kd": KDConfig}
# Keys a resumed run may change: speed, output, and how far the run goes (steps, stop_after).
RESUMABLE_KEYS = frozenset({
    "steps", "stop_after", "device", "threads", "progress", "data.num_workers", "log_every",
    "kd.cache_dir", "deadline",
})


def unused_kd_keys(method: str) -> frozenset[str]:
    """The ``kd.*`` option keys that ``method`` does not read (every one for ``none``): a resumed
    run may differ in them, e.g. a saved config written under another default of an option its
    method never uses."""
    used = set(KD_OPTION_KEYS.get(method, {}))
    return frozenset(f"kd.{key}" for key in KD_OPTION_DEFAULTS if key not in used)


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def all_keys() -> list[str]:
    """Every dotted key a config may set (``model.overrides.X`` keys are free-form)."""
    keys = []
    for name in _field_names(TrainConfig):
        if name in SECTIONS:
            keys += [f"{name}.{sub}" for sub in _field_names(SECTIONS[name])]
        else:
            keys.append(name)
    return keys


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check and convert a value to the type of the field's default (YAML gives ints for floats)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise DfkdError(f"config key {key!r}: expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, str):
            try:  # YAML 1.1 reads "3e-4" (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DfkdError(f"config key {key!r}: expected a number, got {value!r}")
        if isinstance(default, int) and float(value) != int(value):
            raise DfkdError(f"config key {key!r}: expected an integer, got {value!r}")
        return type(default)(value)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise DfkdError(f"config key {key!r}: expected a list of {len(default)}, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise DfkdError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(default, str) and not isinstance(value, str):
        return str(value)
    return value


def _typed_default(cls, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        default = f.default
    else:
        default = f.default_factory()  # type: ignore[misc]
    # Optional fields default to None: type them from their annotation instead.
    if default is None and "float" in str(f.type):
        return 0.0
    if default is None and "str" in str(f.type):
        return ""
    return default


def set_key(config: TrainConfig, key: str, value: Any) -> None:
    """Set one dotted key (``optim.lr``, ``steps``, ``model.overrides.n_blocks``), type-checked."""
    parts = key.split(".")
    if parts[0] == "model" and len(parts) == 3 and parts[1] == "overrides":
        config.model.overrides[parts[2]] = value
        return
    if len(parts) == 1 and parts[0] in _field_names(TrainConfig) and parts[0] not in SECTIONS:
        setattr(config, key, _coerce(key, value, _typed_default(TrainConfig, key)))
        return
    if len(parts) == 2 and parts[0] in SECTIONS and parts[1] in _field_names(SECTIONS[parts[0]]):
        section = getattr(config, parts[0])
        setattr(section, parts[1], _coerce(key, value, _typed_default(SECTIONS[parts[0]], parts[1])))
        return
    raise DfkdError(f"config key {key!r} does not exist; known keys: {', '.join(all_keys())}")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and (key in SECTIONS or key == "model.overrides"):
            if key == "model.overrides":
                yield key, dict(value)
            else:
                yield from _flatten(value, key + ".")
        else:
            yield key, value


def apply_mapping(config: TrainConfig, data: Mapping[str, Any], source: str) -> None:
    """Apply a nested mapping (as read from YAML) onto ``config``."""
    if not isinstance(data, Mapping):
        raise DfkdError(f"{source}: a config file must hold a mapping of keys")
    for key, value in _flatten(data):
        try:
            if key == "model.overrides":
                config.model.overrides.update(value)
            else:
                set_key(config, key, value)
        except DfkdError as err:
            raise DfkdError(f"{source}: {err}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise DfkdError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DfkdError(f"{path}: not valid YAML ({err})") from None
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as YAML (``3e-4`` -> float, ``true`` -> bool)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise DfkdError(f"--set {text!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), as written to ``config.yaml``."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def from_dict(data: Mapping[str, Any], source: str = "config") -> TrainConfig:
    """Rebuild a config from :func:`to_dict` output (e.g. a run's ``config.yaml``)."""
    config = TrainConfig()
    apply_mapping(config, data, source)
    return config


def load_run_config(path: str | Path) -> TrainConfig:
    """A run's saved ``config.yaml``. A ``kd.*`` key it lacks was saved before that option existed,
    so it means the option's value then (:data:`dfkd.distill.methods.LEGACY_DEFAULTS`), not
    today's default: a resumed run goes on as it began."""
    from ..distill.methods import LEGACY_DEFAULTS

    # LEGACY_DEFAULTS speaks in option names, the config in kd.* keys (``norm`` is ``output_norm``)
    key_of = {option: key for keys in KD_OPTION_KEYS.values() for key, option in keys.items()}
    data = dict(load_yaml(path))
    if isinstance(data.get("kd"), Mapping):
        legacy = {key_of[option]: value for option, value in LEGACY_DEFAULTS.items()}
        data["kd"] = {**legacy, **data["kd"]}
    return from_dict(data, str(path))


def dump_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def differing_keys(a: TrainConfig, b: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    flat_a, flat_b = dict(_flatten(to_dict(a))), dict(_flatten(to_dict(b)))
    return sorted(k for k in set(flat_a) | set(flat_b) if flat_a.get(k) != flat_b.get(k))


def validate(config: TrainConfig) -> None:
    """Checks of values that do not need the data or the models (all raise DfkdError)."""
    checks = [
        (config.steps > 0, "steps must be > 0"),
        (config.stop_after is None or config.stop_after > 0, "stop_after must be > 0 (or null)"),
        (config.batch_size > 0, "batch_size must be > 0"),
        (config.data.segment_seconds > 0, "data.segment_seconds must be > 0"),
        (config.data.valid_segment_seconds > 0, "data.valid_segment_seconds must be > 0"),
        (config.data.valid_clips > 0, "data.valid_clips must be > 0"),
        (config.data.pesq_clips >= 0, "data.pesq_clips must be >= 0"),
        (config.optim.lr > 0, "optim.lr must be > 0"),
        (config.optim.optimizer in ("adam", "adamw"), "optim.optimizer must be adam or adamw"),
        (config.optim.schedule in ("cosine", "constant"), "optim.schedule must be cosine or constant"),
        (config.optim.grad_clip >= 0, "optim.grad_clip must be >= 0"),
        (config.log_every > 0 and config.valid_every > 0, "log_every and valid_every must be > 0"),
        (config.checkpoint_every > 0, "checkpoint_every must be > 0"),
        (config.best_metric in ("si_snr", "pesq_wb", "loss"), "best_metric: si_snr | pesq_wb | loss"),
        (config.seed >= 0, "seed must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise DfkdError(message)
    check_two_step(config.kd.two_step, config.kd.two_step_then, config.kd.method)
    if config.best_metric == "pesq_wb" and config.data.pesq_clips == 0:
        raise DfkdError("best_metric pesq_wb needs data.pesq_clips > 0")
    if not config.data.root:
        raise DfkdError("no training data: pass --data DIR (or set data.root)")

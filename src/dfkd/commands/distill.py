"""`dfkd distill`: train a student of the teacher's architecture with a KD method.

    dfkd distill --teacher RUN_OR_CKPT --preset tiny --method dfkd --data DIR --out RUN
                 [--kd-weight 1] [--adapter cummax-slope|energy-rolloff:0.9|fixed:1000]
                 [--beta 0.5] [--crossover inclusive|exclusive] [--cache-teacher] [...]

Every option of every KD method has a flag, derived from the method classes
(:attr:`dfkd.distill.methods.KDLoss.config_keys`): ``--output-norm mse``, ``--subband-bands 8``,
``--dispatch-base dfkd``, ``--cosine-bins 10/40``...

The teacher may be a dfkd run folder or checkpoint, an asteroid checkpoint (``model_args`` +
``state_dict``), an ONNX or TorchScript waveform-to-waveform model, or a folder of the teacher's
enhanced files (:mod:`dfkd.distill.teachers`). The student's architecture is the teacher's unless
``--arch`` says otherwise (output-level KD compares waveforms, so any family may teach any other);
a teacher that is none of ours needs ``--arch``. The preset defaults to ``tiny`` and the seed to
the teacher's seed + 1 (a student never shares its teacher's seed). All options of
`dfkd train` apply as well (see ``dfkd distill --help``).
"""

from __future__ import annotations

import argparse

from ..distill.methods import KD_METHODS
from ..errors import DfkdError
from .train import COMMON_FLAGS, add_common_arguments, resolve_config

DISTILL_FLAGS: dict[str, str] = {
    "arch": "model.arch",
    "teacher": "kd.teacher",
    "method": "kd.method",
    "kd_weight": "kd.weight",
    "cache_teacher": "kd.cache_teacher",
    "cache_dir": "kd.cache_dir",
    "two_step": "kd.two_step",
    "two_step_then": "kd.two_step_then",
}


FOREIGN = "__foreign_teacher__"  # marks defaults of a teacher that fixes no student architecture


def student_defaults(teacher: str, arch: str | None) -> dict:
    """The config defaults of a student of ``teacher``; a foreign teacher needs ``arch``."""
    defaults = _teacher_defaults(teacher)
    if defaults.pop(FOREIGN, False) and not arch:
        raise DfkdError(f"{teacher}: this teacher is not one of our models, so it does not fix the "
                        "student's architecture: pass --arch dccrn|convtasnet|dptnet")
    return defaults


def kd_option_flags() -> dict[str, str]:
    """argparse dest -> ``kd.*`` key of every option of the package's KD methods (one flag per key)."""
    from ..training.config import KD_OPTION_DEFAULTS

    return {key: f"kd.{key}" for key in KD_OPTION_DEFAULTS}


def _add_kd_option_flags(parser: argparse.ArgumentParser) -> None:
    """``--KEY VALUE`` per option, from the method classes; a bool gets ``--no-KEY`` when it
    defaults to true (``--no-polarity-fix``) and ``--KEY`` when it defaults to false."""
    from ..distill.methods import BUILTIN_METHODS, kd_options

    group = parser.add_argument_group("KD method options (each applies to the methods named in its help)")
    seen: set[str] = set()
    for method in BUILTIN_METHODS:
        for option in kd_options(method):
            if option.key in seen:
                continue
            seen.add(option.key)
            flag, default = option.key.replace("_", "-"), option.default
            text = f"{option.help} (default {default!r})" if option.help else f"default {default!r}"
            if isinstance(default, bool):
                group.add_argument(f"--no-{flag}" if default else f"--{flag}", dest=option.key,
                                   action="store_false" if default else "store_true", default=None,
                                   help=text)
            else:
                group.add_argument(f"--{flag}", dest=option.key, type=type(default), default=None,
                                   metavar=option.key.upper(), help=text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", metavar="TEACHER",
                        help="teacher: run folder or checkpoint (dfkd or asteroid), .onnx or "
                             "TorchScript file, or a folder of its enhanced files for the corpus")
    parser.add_argument("--method",
                        help=f"KD method: {', '.join(KD_METHODS)} (default dfkd), or a loss registered "
                             "with dfkd.register_kd_loss by a --plugin module")
    parser.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                        help="import this Python module first (it may call dfkd.register_kd_loss; "
                             "repeatable; pass it again when resuming)")
    parser.add_argument("--kd-weight", type=float, metavar="LAMBDA",
                        help="lambda (default per method: dfkd 1, spectral 10, sisnr 0.1, ...)")
    _add_kd_option_flags(parser)
    parser.add_argument("--cache-teacher", action="store_true", default=None,
                        help="compute teacher outputs once and reuse them (fixed training sets)")
    parser.add_argument("--cache-dir", help="teacher cache folder (default: under the data root)")
    parser.add_argument("--two-step", type=float, metavar="FRACTION",
                        help="two-step schedule (Kegler et al. 2024): train this fraction of the "
                             "steps on the KD term alone first (default 0: off)")
    parser.add_argument("--two-step-then", choices=("task", "task+kd"),
                        help="what the second step trains on (default task+kd)")
    parser.add_argument("--arch", help="the student's architecture (default: the teacher's; "
                                       "required for an ONNX, TorchScript or folder teacher)")
    add_common_arguments(parser)


def import_plugins(modules: list[str]) -> None:
    """Import the ``--plugin`` modules (where user KD losses register themselves)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - any failure of user code is one clear line
            raise DfkdError(f"--plugin {name}: cannot import it ({type(err).__name__}: {err})") from None


def _teacher_defaults(teacher: str) -> dict:
    """Student defaults that follow from the teacher: its architecture and seed + 1 (a teacher
    that is none of ours fixes neither: ``--arch`` is then required)."""
    from ..checkpoint import read_checkpoint, resolve_checkpoint
    from ..distill.teachers import teacher_kind
    from ..models import asteroid_arch

    if teacher_kind(teacher) != "checkpoint":
        return {"model.preset": "tiny", "kd.method": "dfkd", FOREIGN: True}
    path = resolve_checkpoint(teacher)
    data = read_checkpoint(path)
    if data.get("format") == "dfkd":
        arch = data.get("arch")
    elif "model_args" in data and "state_dict" in data:
        arch = asteroid_arch(data)
    else:
        raise DfkdError(f"{path}: neither a dfkd checkpoint nor an asteroid checkpoint")
    defaults = {"model.arch": arch, "model.preset": "tiny", "kd.method": "dfkd"}
    if data.get("train_seed") is not None:
        defaults["seed"] = int(data["train_seed"]) + 1
    return defaults


def run(args: argparse.Namespace) -> int:
    from ..training.allocator import keep_freed_memory
    from ..training.run import run_training

    import_plugins(args.plugin)
    if args.method is not None and args.method not in KD_METHODS:
        raise DfkdError(f"unknown KD method {args.method!r}; choose one of {', '.join(KD_METHODS)} "
                        "(or register it with dfkd.register_kd_loss in a --plugin module)")
    defaults = {"model.preset": "tiny", "kd.method": "dfkd"}
    if args.teacher and not args.resume:
        defaults = student_defaults(args.teacher, args.arch)
    config = resolve_config(args, {**COMMON_FLAGS, **DISTILL_FLAGS, **kd_option_flags()}, defaults)
    if not config.kd.teacher:
        raise DfkdError("dfkd distill needs --teacher RUN_OR_CHECKPOINT")
    keep_freed_memory()  # ~1.1x faster steps on a CPU (training/allocator.py)
    out = run_training(config, args.out, resume=args.resume)
    print(f"dfkd distill: run written to {out}")
    return 0

"""`dfkd distill`: train a student of the teacher's architecture with a KD method.

    dfkd distill --teacher RUN_OR_CKPT --preset tiny --method dfkd --data DIR --out RUN
                 [--kd-weight 1] [--adapter cummax-slope|energy-rolloff:0.9|fixed:1000]
                 [--beta 0.5] [--crossover inclusive|exclusive] [--cache-teacher] [...]

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
    "adapter": "kd.adapter",
    "beta": "kd.beta",
    "crossover": "kd.crossover",
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", metavar="TEACHER",
                        help="teacher: run folder or checkpoint (dfkd or asteroid), .onnx or "
                             "TorchScript file, or a folder of its enhanced files for the corpus")
    parser.add_argument("--method", choices=tuple(KD_METHODS),
                        help="KD method (default dfkd)")
    parser.add_argument("--kd-weight", type=float, metavar="LAMBDA",
                        help="lambda (default per method: dfkd 1, spectral 10, sisnr 0.1, ...)")
    parser.add_argument("--adapter", help="dfkd crossover rule: cummax-slope (default), "
                                          "energy-rolloff:Q, fixed:HZ")
    parser.add_argument("--beta", type=float, help="dfkd high-band cosine weight (default 0.5)")
    parser.add_argument("--crossover", choices=("inclusive", "exclusive"),
                        help="whether the crossover bin belongs to both bands (default inclusive)")
    parser.add_argument("--no-polarity-fix", action="store_true",
                        help="do not flip the teacher to agree in sign with the clean target")
    parser.add_argument("--scale-fix", action="store_true",
                        help="output/spectral/subband/dfkd: bring the teacher to the clean target's "
                             "scale first (its least-squares gain; includes the polarity fix)")
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
    from ..training.run import run_training

    defaults = {"model.preset": "tiny", "kd.method": "dfkd"}
    if args.teacher and not args.resume:
        defaults = student_defaults(args.teacher, args.arch)
    config = resolve_config(args, {**COMMON_FLAGS, **DISTILL_FLAGS}, defaults)
    if args.no_polarity_fix:
        config.kd.polarity_fix = False
    if args.scale_fix:
        config.kd.scale_fix = True
    if not config.kd.teacher:
        raise DfkdError("dfkd distill needs --teacher RUN_OR_CHECKPOINT")
    out = run_training(config, args.out, resume=args.resume)
    print(f"dfkd distill: run written to {out}")
    return 0

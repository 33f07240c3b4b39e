"""The `dfkd` command line: a thin dispatcher.

Each sub-command lives in `dfkd.commands.<name>` and exposes ``add_arguments(parser)`` and
``run(args) -> int``. This file only parses and dispatches, so that the commands stay importable and
testable on their own, and a command that is not built yet fails with a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from . import __version__
from .errors import DfkdError, TrainingStopped

# name -> one-line help. Order is the order of the data path (README tour).
COMMANDS: dict[str, str] = {
    "models": "table of every architecture x preset: parameters, MACs, CPU real-time factor",
    "corpus": "build the offline demo or held-out corpus, or check a corpus",
    "evaluate": "score a model or a folder of enhanced files (PESQ, STOI, SI-SNR, CSIG/CBAK/COVL)",
    "train": "train a model (teacher or `none` student) on the task loss",
    "distill": "train a student from a frozen teacher with a KD method (dfkd, spectral, ...)",
    "experiment": "run the comparison grid and write the results table, plots and report",
    "enhance": "enhance audio files with a checkpoint or an ONNX model",
    "export": "export a checkpoint to ONNX (optionally int8) and check parity",
    "bench": "CPU real-time factor and latency of checkpoints (PyTorch, ONNX fp32/int8)",
}

EXIT_STOPPED = 75  # a run saved last.pt at its deadline (EX_TEMPFAIL: try again later)


def _load_command(name: str):
    """The command's module, or the import error it raised.

    A command that fails to import must not take the other commands down with it: its error is
    reported when that command is run (and `tests/test_package.py` imports every command).
    """
    try:
        return importlib.import_module(f"dfkd.commands.{name}")
    except Exception as err:  # noqa: BLE001 - reported when the command runs
        return err


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (the others need only their help line).

    Importing one sub-command, not all, keeps start-up light (`dfkd --version` imports no torch)
    and lets a command set up its environment before torch loads (see `dfkd.commands.bench`).
    """
    parser = argparse.ArgumentParser(
        prog="dfkd",
        description="Knowledge distillation for speech enhancement (DFKD, arXiv 2502.04711).",
    )
    parser.add_argument("--version", action="version", version=f"dfkd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != command:
            continue
        module = _load_command(name)
        if isinstance(module, BaseException):
            p.set_defaults(_module=None, _name=name, _import_error=module)
            continue
        module.add_arguments(p)
        p.set_defaults(_module=module, _name=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The top level takes only flags without values, so the first other word names the command.
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if getattr(args, "_import_error", None) is not None:
            err = args._import_error
            print(f"dfkd {args._name}: internal error: the command failed to load "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return 3
        return int(args._module.run(args) or 0)
    except DfkdError as err:
        print(f"dfkd {args._name}: error: {err}", file=sys.stderr)
        return 1
    except TrainingStopped as err:  # `--set deadline=...`: not an error, and --resume continues
        print(f"dfkd {args._name}: {err}; --resume continues it", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print(f"dfkd {args._name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

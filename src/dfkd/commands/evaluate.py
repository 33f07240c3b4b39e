"""`dfkd evaluate`: score a model on a test set, or a folder of enhanced files.

    dfkd evaluate --model CKPT --data DIR --out DIR [--split test] [--save-enhanced]
    dfkd evaluate --enhanced DIR --clean DIR [--noisy DIR] --out DIR

Writes ``per_file.csv``, ``summary.json`` and ``summary.md`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DfkdError
from ..evaluation.metrics import ALL_METRICS, DEFAULT_METRICS, DNSMOS_METRICS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model mode: enhance a test set with a checkpoint")
    model.add_argument("--model", metavar="CKPT", help="checkpoint file or run folder")
    model.add_argument("--data", metavar="DIR",
                       help="corpus root (VoiceBank, DNS, folder pairs) or manifest")
    model.add_argument("--split", default="test", help="split of --data to score (default: test)")
    model.add_argument("--save-enhanced", action="store_true",
                       help="also write the enhanced files to OUT/enhanced/ (32-bit float wav)")
    model.add_argument("--device", default=None, help="device for the model (default: cpu)")
    folders = parser.add_argument_group("folder mode: score enhanced files (paired by name)")
    folders.add_argument("--enhanced", metavar="DIR", help="folder of enhanced files")
    folders.add_argument("--clean", metavar="DIR", help="folder of clean references")
    folders.add_argument("--noisy", metavar="DIR",
                         help="folder of noisy inputs (adds SI-SNRi and the noisy row)")
    parser.add_argument("--out", metavar="DIR", required=True,
                        help="where per_file.csv, summary.json and summary.md go")
    parser.add_argument("--metrics", default=None, metavar="LIST",
                        help=f"comma-separated metrics from: {' '.join(ALL_METRICS)} "
                             "(default: all but DNSMOS)")
    parser.add_argument("--dnsmos", action="store_true",
                        help="add DNSMOS SIG/BAK/OVRL (needs: pip install dfkd[dnsmos])")
    parser.add_argument("--workers", type=int, default=None,
                        help="scoring processes (default: one per core; 0: in this process)")
    parser.add_argument("--label", default=None, help="name of the system in the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _metrics(args: argparse.Namespace) -> list[str]:
    if args.metrics:
        names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    else:
        names = list(DEFAULT_METRICS)
    if args.dnsmos:
        names += [m for m in DNSMOS_METRICS if m not in names]
    return names


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate

    model_mode = args.model is not None or args.data is not None
    folder_mode = args.enhanced is not None or args.clean is not None or args.noisy is not None
    if model_mode == folder_mode:
        raise DfkdError("give either --model and --data, or --enhanced and --clean (not both)")
    if args.workers is not None and args.workers < 0:
        raise DfkdError(f"--workers must be >= 0, got {args.workers}")
    metrics = _metrics(args)
    common = dict(metrics=metrics, workers=args.workers, label=args.label,
                  progress=not args.no_progress)
    out = Path(args.out)

    if model_mode:
        if args.model is None or args.data is None:
            raise DfkdError("model mode needs both --model CKPT and --data DIR")
        from ..checkpoint import load_model
        from ..data.layouts import corpus_pairs, split_source

        model = load_model(args.model)
        pairs = corpus_pairs(args.data, args.split)
        if not pairs:
            raise DfkdError(f"{args.data}: no pairs in split {args.split!r}")
        source = split_source(args.data, args.split)
        if source:
            print(f"dfkd evaluate: {args.split} split of {args.data}: {len(pairs)} pairs, {source}",
                  file=sys.stderr)
        summary = evaluate.evaluate_model(
            model, pairs, out, device=args.device,
            save_enhanced=out / "enhanced" if args.save_enhanced else None,
            **{**common, "label": args.label or Path(args.model).stem},
        )
    else:
        if args.enhanced is None or args.clean is None:
            raise DfkdError("folder mode needs both --enhanced DIR and --clean DIR")
        if args.noisy is None and args.metrics and "si_snri" in args.metrics:
            print("dfkd evaluate: si_snri skipped: it needs the noisy inputs (--noisy DIR)",
                  file=sys.stderr)
        summary = evaluate.evaluate_folders(args.enhanced, args.clean, args.noisy, out, **common)

    print(summary.to_markdown(), end="")
    print(f"wrote {out / 'per_file.csv'}, {out / 'summary.json'}, {out / 'summary.md'}",
          file=sys.stderr)
    if summary.count == 0:
        raise DfkdError(f"no clip could be scored ({len(summary.failed)} failed; "
                        f"see {out / 'summary.md'})")
    if summary.failed:
        print(f"dfkd evaluate: {len(summary.failed)} clip(s) skipped, see {out / 'summary.md'}",
              file=sys.stderr)
    return 0

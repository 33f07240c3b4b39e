"""`dfkd bench [CKPT ...]`: CPU real-time factor and latency, PyTorch vs ONNX Runtime fp32/int8."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Before torch loads (the CLI imports only this command's module, and this module imports torch
# lazily): with active OpenMP waiting, 2-thread PyTorch on a shared machine ran 10-200x slower now
# and then, which would make every PyTorch timing meaningless (see dfkd.deploy.bench). No effect if set.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ..errors import DfkdError
from .export import add_int8_ops_argument, int8_ops


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="*", metavar="CKPT",
                        help="checkpoints or run folders; the first is the reference (teacher)")
    parser.add_argument("--arch", help="build fresh models of this architecture instead of CKPTs")
    parser.add_argument("--presets", default="paper,student",
                        help="presets for --arch, the first is the reference (default paper,student)")
    parser.add_argument("--engines", default="pytorch,onnx-fp32,onnx-int8",
                        help="comma-separated: pytorch, onnx-fp32, onnx-int8 (default all)")
    add_int8_ops_argument(parser)
    parser.add_argument("--threads", default="1,all",
                        help="thread counts, 'all' = every core (default 1,all)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="clip length for the real-time factor (default 4)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="timed rounds (default: as many as fit --budget, 3 to 15)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds of timing to aim for (default 60)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--stream", action="store_true",
                        help="time causal models hop by hop (PyTorch and ONNX Runtime streaming "
                             "graph): per-hop compute time, real-time factor, latency")


def _models(args: argparse.Namespace):
    from ..deploy.bench import BenchModel
    from ..checkpoint import load_model

    if args.arch and args.checkpoints:
        raise DfkdError("give either checkpoints or --arch, not both")
    if args.arch:
        from ..models import build

        presets = [p.strip() for p in args.presets.split(",") if p.strip()]
        return [BenchModel(f"{args.arch}/{p}", build(args.arch, p), args.arch, p) for p in presets]
    if not args.checkpoints:
        raise DfkdError("give checkpoints to time, or --arch ARCH [--presets paper,student]")
    entries = []
    for path in args.checkpoints:
        label = _label(Path(path))
        if any(e.label == label for e in entries):
            label = f"{label}#{len(entries) + 1}"
        if Path(path).suffix.lower() == ".onnx":  # the file `dfkd enhance` accepts, timed as is
            entries.append(_onnx_entry(Path(path), label))
            continue
        model = load_model(path)
        entries.append(BenchModel(label, model, getattr(model, "ARCH", "")))
    return entries


def _onnx_entry(path: Path, label: str):
    """An exported model: timed by ONNX Runtime; rebuilt from its metadata only to count."""
    import json
    import sys

    from ..deploy.backends import load_backend
    from ..deploy.bench import BenchModel
    from ..deploy.export import onnx_metadata

    backend = load_backend(path)  # not found / not an ONNX model: one-line DfkdError
    meta = onnx_metadata(backend.session)
    model = None
    if meta.get("arch") and meta.get("config"):
        from ..models import build_from_config

        try:
            model = build_from_config(meta["arch"], json.loads(meta["config"]))
        except (DfkdError, ValueError, TypeError):
            model = None
    print(f"dfkd bench: {path}: an ONNX file is timed with ONNX Runtime only (no PyTorch row)"
          + ("" if model is not None else "; no dfkd metadata, so no parameter or MAC count"),
          file=sys.stderr)
    return BenchModel(label, model, meta.get("arch", ""), onnx=path)


def _label(path: Path) -> str:
    """A short name: ``teacher.pt``; ``runs/student/best.pt`` -> ``student/best.pt``."""
    if path.is_file() and path.name in ("best.pt", "last.pt"):
        return "/".join(path.resolve().parts[-2:])
    return path.name


def _run_stream(args: argparse.Namespace) -> int:
    """``--stream``: every causal model, PyTorch and ORT streaming, on one thread each."""
    import tempfile

    from ..deploy.stream import OnnxStep, TorchStep, export_streaming
    from ..deploy.stream_io import time_stream
    from ..models import build
    from ..checkpoint import load_model

    threads = [int(t) for t in args.threads.split(",") if t.strip().isdigit()] or [1]
    if args.arch:
        named = [(f"{args.arch}/{p.strip()}", build(args.arch, p.strip()))
                 for p in args.presets.split(",") if p.strip()]
    else:
        named = [(_label(Path(c)), load_model(c)) for c in args.checkpoints]
    if not named:
        raise DfkdError("--stream: name checkpoints or --arch with --presets (causal ones, "
                        "e.g. --arch convtasnet --presets tiny-causal,student-causal)")
    rows = []
    print("| model | engine | threads | hop ms | per-hop ms | RTF | latency ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in named:
            torch_step = TorchStep(model)
            path = export_streaming(model, Path(tmp) / "stream.onnx")
            for count in threads:
                import torch

                torch.set_num_threads(count)
                for engine, step in (("pytorch", torch_step),
                                     ("onnxruntime", OnnxStep(path, threads=count))):
                    row = dict(model=label, engine=engine, threads=count,
                               **time_stream(step, seconds=min(args.seconds, 2.0),
                                             rounds=args.rounds or 3))
                    rows.append(row)
                    print(f"| {label} | {engine} | {count} | {row['hop_ms']:g} | "
                          f"{row['per_hop_ms']:.3f} | {row['rtf']:.3f} | "
                          f"{row['latency_ms']:g} |", flush=True)
    print("RTF = compute time per hop / hop duration (below 1: keeps up with real time); "
          "latency: the model's algorithmic latency (compute time per hop comes on top).")
    if args.json:
        from ..files import write_json

        write_json(args.json, {"stream": rows})
    return 0


def run(args: argparse.Namespace) -> int:
    if args.stream:
        return _run_stream(args)
    from ..deploy.bench import ENGINES, benchmark, format_table, thread_counts

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:  # checked before building models, which may be paper-size
        raise DfkdError(f"--engines: unknown {', '.join(unknown) or '(empty)'}; "
                        f"choose from {', '.join(ENGINES)}")
    models = _models(args)
    idle = [m.label for m in models if not m.engines(engines)]
    if idle:
        raise DfkdError(f"{', '.join(idle)}: an ONNX file cannot be timed with --engines "
                        f"{args.engines}; add onnx-fp32 or onnx-int8")
    result = benchmark(models, engines=engines, threads=thread_counts(args.threads),
                       seconds=args.seconds, rounds=args.rounds, budget_seconds=args.budget,
                       progress=not args.quiet,
                       int8_ops=int8_ops(args))
    print(format_table(result))
    if args.json:
        from ..files import write_json

        write_json(args.json, result.to_dict())
    return 0

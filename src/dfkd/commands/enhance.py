"""`dfkd enhance CKPT INPUT --out OUTPUT`: enhance a file or a folder tree, streaming long files."""

from __future__ import annotations

import argparse
import sys

from ..deploy.streaming import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT",
                        help="dfkd checkpoint, run folder, asteroid checkpoint or .onnx file")
    parser.add_argument("input", metavar="INPUT",
                        help="audio file or folder (searched recursively for .wav, .flac, .ogg)")
    parser.add_argument("--out", required=True, metavar="OUTPUT",
                        help="output file, or folder (mirrors INPUT's tree when INPUT is a folder)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for inference (default: the library's choice)")
    parser.add_argument("--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
                        help=f"length of the chunks long files are cut into (default {DEFAULT_CHUNK_SECONDS:g})")
    parser.add_argument("--overlap-seconds", type=float, default=DEFAULT_OVERLAP_SECONDS,
                        help="cross-fade between neighbouring chunks, at most half a chunk "
                             f"(default {DEFAULT_OVERLAP_SECONDS:g})")
    parser.add_argument("--mono", action="store_true",
                        help="downmix to one channel and write mono (default: enhance every channel)")
    parser.add_argument("--raw-level", action="store_true",
                        help="keep the model's own output level (default: one least-squares gain per "
                             "channel puts the speech at its level in the input)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing outputs (without it, an existing output is an error)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--stream", action="store_true",
                        help="run a causal model hop by hop with its state (a causal checkpoint or "
                             "an .onnx from dfkd export --streaming); INPUT one file, or '-' with "
                             "--out - for raw samples on standard input/output")
    parser.add_argument("--raw-format", default="float32", choices=("float32", "int16"),
                        help="sample format of '-' pipes with --stream: mono 16 kHz, "
                             "little-endian, no header (default float32)")


def run(args: argparse.Namespace) -> int:
    from ..deploy.backends import load_backend
    from ..deploy.enhance import enhance_paths
    from ..deploy.streaming import Chunking

    if args.stream:
        return _run_stream(args)
    chunking = Chunking(args.chunk_seconds, args.overlap_seconds)
    backend = load_backend(args.checkpoint, device=args.device, threads=args.threads)
    summary = enhance_paths(backend, args.input, args.out, chunking, mono=args.mono,
                            overwrite=args.overwrite, progress=not args.quiet,
                            raw_level=args.raw_level)
    parts = [f"{len(summary.written)} written"]
    if summary.existing:
        parts.append(f"{len(summary.existing)} not replaced (the output exists; --overwrite "
                     "replaces it)")
    if summary.failed:
        parts.append(f"{len(summary.failed)} failed")
    print(f"dfkd enhance: {', '.join(parts)} -> {args.out}", file=sys.stderr)
    for dst in summary.existing:
        print(f"  exists: {dst}", file=sys.stderr)
    for path, reason in summary.failed.items():
        print(f"  failed: {reason}", file=sys.stderr)
    return 1 if summary.failed or summary.existing else 0


def _run_stream(args: argparse.Namespace) -> int:
    """``--stream``: one file, or a raw pipe from standard input to standard output."""
    from pathlib import Path

    from ..deploy.stream import Streamer
    from ..deploy.stream_io import load_step, stdio, stream_file, stream_pipe
    from ..errors import DfkdError

    if (args.input == "-") != (args.out == "-"):
        raise DfkdError("--stream: INPUT '-' (standard input) goes with --out - (standard output)")
    streamer = Streamer(load_step(args.checkpoint, threads=args.threads))
    if args.input == "-":
        source, sink = stdio()
        written = stream_pipe(streamer, source, sink, args.raw_format)
        print(f"dfkd enhance --stream: {written} samples, {streamer.delay} samples behind the "
              f"input until the end, algorithmic latency {streamer.latency_ms:g} ms",
              file=sys.stderr)
        return 0
    src, dst = Path(args.input), Path(args.out)
    if src.is_dir():
        raise DfkdError(f"{src}: --stream takes one audio file (or '-'), not a folder")
    if dst.exists() and not args.overwrite:
        raise DfkdError(f"{dst}: exists (--overwrite replaces it)")
    hops = stream_file(streamer, src, dst)
    print(f"dfkd enhance --stream: {hops} hops of {streamer.hop} samples -> {dst}",
          file=sys.stderr)
    return 0

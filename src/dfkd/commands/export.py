"""`dfkd export CKPT --onnx OUT.onnx [--int8]`: ONNX export with a parity check, optional int8."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import DfkdError


def add_int8_ops_argument(parser: argparse.ArgumentParser) -> None:
    """``--int8-ops`` (shared with `dfkd bench`); read it back with :func:`int8_ops`."""
    parser.add_argument("--int8-ops", metavar="OPS",
                        help="dynamic int8 of these operator types (default MatMul,LSTM; 'all' adds "
                             "Conv: about 4x smaller convs, but onnxruntime's ConvInteger makes the "
                             "model 4-5x slower on CPU; static int8 quantises convs that pay)")


def int8_ops(args: argparse.Namespace) -> list[str] | None:
    """The operator types of ``--int8-ops`` (``None``: the default set)."""
    return [op.strip() for op in args.int8_ops.split(",")] if args.int8_ops else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT",
                        help="dfkd checkpoint, run folder (best.pt) or asteroid checkpoint")
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="where to write the model")
    parser.add_argument("--int8", action="store_true",
                        help="also write an int8 model and report its cost (scheme per "
                             "architecture: static QDQ convolutions for Conv-TasNet and DCCRN, "
                             "dynamic MatMul/LSTM for DPTNet; see --int8-scheme)")
    parser.add_argument("--int8-scheme", choices=("auto", "static", "dynamic"), default="auto",
                        help="static: convolutions quantised with scales calibrated on clips "
                             "(QDQ, fused into QLinearConv) + dynamic MatMul/LSTM; dynamic: "
                             "MatMul/LSTM only (or --int8-ops); auto (default): the measured best "
                             "for the model's architecture")
    parser.add_argument("--calibrate", metavar="DIR",
                        help="static int8: calibrate on the noisy train clips of this corpus, or "
                             "on the audio files of any folder (default: built-in synthetic "
                             "speech in pink noise)")
    parser.add_argument("--calibrate-clips", type=int, default=None, metavar="N",
                        help="clips read for calibration (default 8)")
    parser.add_argument("--int8-out", metavar="PATH",
                        help="int8 model path (default: OUT.int8.onnx next to OUT.onnx)")
    add_int8_ops_argument(parser)
    parser.add_argument("--data", metavar="DIR",
                        help="corpus whose test clips score the int8 model (default: built-in "
                             "synthetic speech in pink noise)")
    parser.add_argument("--clips", type=int, default=4, help="clips scored for --int8 (default 4)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="max abs error allowed between onnxruntime and PyTorch (default 1e-4)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    parser.add_argument("--streaming", action="store_true",
                        help="write the causal model's one-hop streaming graph (state as explicit "
                             "inputs/outputs) instead of the whole-file graph")


def int8_path(onnx_path: Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    return onnx_path.with_name(onnx_path.stem + ".int8" + onnx_path.suffix)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_model
    from ..deploy.export import (PARITY_TOLERANCE, compare_quality, corpus_test_pairs, export_checked,
                          model_metadata, synthetic_pairs)
    from ..deploy.quantize import quantize_for

    out = Path(args.onnx)
    if out.suffix.lower() != ".onnx":
        raise DfkdError(f"{out}: the output file must end in .onnx")
    target = Path(args.int8_out) if args.int8_out else int8_path(out)
    if args.int8 and target.suffix.lower() != ".onnx":
        raise DfkdError(f"{target}: the int8 output file must end in .onnx")
    if args.data and not args.int8:
        raise DfkdError("--data gives the clips that score the int8 model: add --int8")
    if (args.calibrate or args.int8_scheme != "auto") and not args.int8:
        raise DfkdError("--int8-scheme and --calibrate choose how int8 is made: add --int8")
    if args.int8_ops and args.int8_scheme == "static":
        raise DfkdError("--int8-ops lists the dynamically quantised operators: it cannot be "
                        "combined with --int8-scheme static")
    model = load_model(args.checkpoint)
    if args.streaming:
        if args.int8:
            raise DfkdError("--streaming and --int8 cannot be combined (the streaming graph is "
                            "written in float32)")
        return _export_streaming(model, out, args)
    pairs = calibration = None
    scheme = None
    if args.int8:  # every input is checked before the first file is written
        scheme = _scheme(args, str(getattr(model, "ARCH", "")))
        if scheme == "static":
            calibration, calibrated_on = _calibration(args, model.sample_rate)
        if args.data:
            pairs = corpus_test_pairs(args.data, limit=args.clips, sample_rate=model.sample_rate)
            source = f"{len(pairs)} test clips of {args.data}"
        else:
            pairs = synthetic_pairs(count=args.clips)
            source = f"{len(pairs)} synthetic speech clips in pink noise at 5 dB"
    tolerance = PARITY_TOLERANCE if args.tolerance is None else args.tolerance
    errors = export_checked(model, out, tolerance=tolerance,
                            metadata=model_metadata(model, source=Path(args.checkpoint).name))
    report: dict = {"onnx": str(out), "bytes": out.stat().st_size,
                    "parity_max_abs_error": {str(n): e for n, e in errors.items()}}
    parity = ", ".join(f"{n} samples {e:.2e}" for n, e in errors.items())
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB); onnxruntime vs PyTorch max abs error: "
          f"{parity} (<= {tolerance:g})")

    if args.int8:
        quant = quantize_for(str(getattr(model, "ARCH", "")), out, target, scheme=scheme,
                             clips=calibration, op_types=int8_ops(args))
        quality = compare_quality(out, target, pairs, sample_rate=model.sample_rate)
        report["int8"] = {"onnx": str(target), **quant, "quality": quality, "clips_from": source}
        if scheme == "static":
            report["int8"]["calibrated_on"] = calibrated_on
        quantized = ", ".join(f"{op} x{n}" for op, n in quant["quantized_ops"].items()) or (
            "none (no operator of the chosen types; --int8-ops all quantises convolutions too)")
        floats = ", ".join(f"{op} x{n}" for op, n in quant["float_ops"].items()) or "none"
        how = (f"static: convolutions calibrated on {calibrated_on}" if scheme == "static"
               else "dynamic")
        print(f"wrote {target} ({quant['int8_bytes'] / 1e6:.2f} MB, "
              f"{quant['int8_bytes'] / quant['fp32_bytes']:.2f}x the fp32 size; {how})")
        print(f"  quantised ops: {quantized}; left in float32: {floats}")
        ref, cand, delta = quality["reference"], quality["candidate"], quality["delta"]
        print(f"  quality on {source}:")
        for metric in ref:
            print(f"    {metric:8s} fp32 {ref[metric]:7.3f}  int8 {cand[metric]:7.3f}  "
                  f"change {delta[metric]:+.3f}")
        print(f"    int8 output vs fp32 output: SI-SNR {quality['agreement_si_snr']:.1f} dB")
    if args.json:
        from ..files import write_json

        write_json(args.json, report)
    sys.stdout.flush()
    return 0


def _scheme(args: argparse.Namespace, arch: str) -> str:
    """The int8 scheme: ``--int8-scheme``, else dynamic for ``--int8-ops``, else per architecture."""
    from ..deploy.quantize import default_scheme

    if args.int8_scheme != "auto":
        return args.int8_scheme
    return "dynamic" if args.int8_ops else default_scheme(arch)


def _calibration(args: argparse.Namespace, sample_rate: int):
    """Calibration clips of ``--calibrate`` (or synthetic ones) and where they came from."""
    from ..deploy.export import synthetic_pairs
    from ..deploy.quantize import CALIBRATION_CLIPS, calibration_clips

    count = CALIBRATION_CLIPS if args.calibrate_clips is None else args.calibrate_clips
    if args.calibrate:
        clips = calibration_clips(args.calibrate, count, sample_rate)
        return clips, f"{len(clips)} clips of {args.calibrate}"
    if count < 1:
        raise DfkdError(f"--calibrate-clips {count}: must be at least 1")
    # seed 1: other clips than the seed-0 ones that score the result by default
    clips = [noisy for noisy, _ in synthetic_pairs(count=count, seed=1)]
    return clips, f"{len(clips)} synthetic speech clips in pink noise"


def _export_streaming(model, out: Path, args: argparse.Namespace) -> int:
    """``--streaming``: the step graph, published only if it streams 1 s like the offline model."""
    import numpy as np
    import torch

    from ..deploy.export import PARITY_TOLERANCE
    from ..deploy.stream import OnnxStep, Streamer, export_streaming

    tolerance = PARITY_TOLERANCE if args.tolerance is None else args.tolerance
    tmp = out.with_name(out.name + ".check.onnx")
    try:
        export_streaming(model, tmp, metadata={"source": Path(args.checkpoint).name})
        signal = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
        step = OnnxStep(tmp)
        with torch.inference_mode():
            offline = model.eval()(torch.from_numpy(signal)[None])[0].numpy()
        error = float(np.abs(Streamer(step).process(signal) - offline).max())
        if not error <= tolerance:
            raise DfkdError(f"{out}: the streaming graph differs from the offline model by "
                            f"{error:.3g} (> {tolerance:g}); no file written")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): streaming graph, hop {step.hop} "
          f"samples, output {step.delay} samples behind the input, algorithmic latency "
          f"{step.latency_ms:g} ms; streamed vs offline max abs error {error:.2e} "
          f"(<= {tolerance:g})")
    if args.json:
        from ..files import write_json

        write_json(args.json, {"onnx": str(out), "streaming": True, "hop": step.hop,
                               "delay": step.delay, "latency_ms": step.latency_ms,
                               "parity_max_abs_error": error})
    return 0

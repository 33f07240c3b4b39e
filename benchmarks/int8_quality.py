"""int8 side by side: speed, file size and quality of static and dynamic int8 against fp32 and PyTorch.

For every architecture and preset, exports the fp32 ONNX file, quantises it both ways
(:mod:`dfkd.deploy.quantize`: ``static`` = QDQ convolutions calibrated on corpus clips + dynamic
MatMul/LSTM; ``dynamic`` = MatMul/LSTM only), then in one run:

* times PyTorch eager, ORT fp32, ORT static int8 and ORT dynamic int8 round-robin (one call of
  each per round, median of ``--rounds``) on a ``--seconds`` clip at ``--threads`` threads, plus a
  second session of the fp32 file whose ratio to the first shows the run's timing noise;
* scores fp32 and both int8 files on ``--clips`` test clips of ``--data``: the int8 output's
  SI-SNR against the fp32 output ("agreement", how closely int8 follows fp32), and the change in
  SI-SNR (= SI-SNRi, same noisy input) and PESQ-WB against the clean references.

``small`` presets load the trained teachers of ``pretrained/``; other presets are untrained (their
PESQ / SI-SNR changes say little, the agreement and speed still do). Calibration reads the
corpus's *train* clips, never the scored test clips.

    PYTHONPATH=src .venv/bin/python benchmarks/int8_quality.py --rounds 7 [--arch convtasnet]

Prints one markdown table (the README's ``dfkd export`` section): speeds as ratios over ORT fp32
measured in the same run, sizes as ratios of the fp32 file.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch (see benchmarks/deploy_speed.py)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dfkd.deploy.bench import SETTLE_SECONDS, machine_info  # noqa: E402
from dfkd.deploy.export import (compare_quality, corpus_test_pairs, export_onnx,  # noqa: E402
                                onnx_forward, onnx_session)
from dfkd.deploy.quantize import (CALIBRATION_CLIPS, DEFAULT_SCHEME, SCHEMES,  # noqa: E402
                                  calibration_clips, quantize_for)
from dfkd.models import ARCHITECTURES, build  # noqa: E402

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


def load(arch: str, preset: str) -> torch.nn.Module:
    """The trained ``pretrained/<arch>_small.pt`` for ``small``, else an untrained preset."""
    if preset == "small" and (PRETRAINED / f"{arch}_small.pt").is_file():
        from dfkd.checkpoint import load_model

        return load_model(PRETRAINED / f"{arch}_small.pt").eval()
    torch.manual_seed(0)
    return build(arch, preset).eval()


def time_round_robin(runners: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each runner, calls interleaved (one of each per round)."""
    for run in runners.values():  # warm-up: allocators, thread pools
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(arch: str, preset: str, workdir: Path, args, calibration, pairs) -> dict:
    model = load(arch, preset)
    stem = workdir / f"{arch}_{preset}"
    files = {"fp32": export_onnx(model, f"{stem}.onnx")}
    reports = {}
    for scheme in SCHEMES:
        files[scheme] = Path(f"{stem}.{scheme}.onnx")
        reports[scheme] = quantize_for(arch, files["fp32"], files[scheme], scheme=scheme,
                                       clips=calibration)
    noisy = (np.random.default_rng(0).standard_normal((1, int(16000 * args.seconds))) * 0.1
             ).astype(np.float32)
    torch.set_num_threads(args.threads)

    def torch_run():
        with torch.inference_mode():
            model(torch.from_numpy(noisy))

    runners = {"pytorch": torch_run}
    for name, path in files.items():
        session = onnx_session(path, threads=args.threads)
        runners[name] = (lambda s: lambda: onnx_forward(s, noisy))(session)
    # a second session of the fp32 file: its "speed-up" over the first is pure timing noise
    control = onnx_session(files["fp32"], threads=args.threads)
    runners["fp32-control"] = lambda: onnx_forward(control, noisy)
    seconds = time_round_robin(runners, args.rounds)
    row = {"arch": arch, "preset": preset, "trained": preset == "small",
           "seconds_per_call": seconds, "fp32_bytes": files["fp32"].stat().st_size,
           "default": DEFAULT_SCHEME.get(arch, "dynamic")}
    for scheme in SCHEMES:
        quality = compare_quality(files["fp32"], files[scheme], pairs)
        row[scheme] = {"speedup_over_fp32": seconds["fp32"] / seconds[scheme],
                       "size_ratio": files[scheme].stat().st_size / row["fp32_bytes"],
                       "quantized_ops": reports[scheme]["quantized_ops"],
                       "agreement_si_snr": quality["agreement_si_snr"],
                       "delta": quality["delta"], "fp32_scores": quality["reference"]}
    row["fp32_over_pytorch"] = seconds["pytorch"] / seconds["fp32"]
    row["noise"] = seconds["fp32"] / seconds["fp32-control"]
    return row


def table(rows: list[dict], threads: int) -> str:
    lines = [f"| model | int8 | speed over ORT fp32 ({threads} thread) | size | int8 vs fp32 output "
             "(SI-SNR) | SI-SNRi change | PESQ-WB change | ORT fp32 over PyTorch | noise (fp32 over "
             "a second fp32 session) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        name = f"{row['arch']}/{row['preset']}" + ("" if row["trained"] else " (untrained)")
        for scheme in SCHEMES:
            cell = row[scheme]
            mark = " **(default)**" if scheme == row["default"] else ""
            lines.append(
                f"| {name} | {scheme}{mark} | {cell['speedup_over_fp32']:.2f}x | "
                f"{cell['size_ratio']:.2f}x | {cell['agreement_si_snr']:.1f} dB | "
                f"{cell['delta']['si_snr']:+.3f} dB | {cell['delta']['pesq_wb']:+.3f} | "
                f"{row['fp32_over_pytorch']:.2f}x | {row['noise']:.2f}x |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=",".join(ARCHITECTURES))
    parser.add_argument("--presets", default="small,student")
    parser.add_argument("--data", default="data/demo_corpus",
                        help="corpus: train clips calibrate, test clips score")
    parser.add_argument("--clips", type=int, default=10, help="test clips scored")
    parser.add_argument("--calibration-clips", type=int, default=CALIBRATION_CLIPS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()

    calibration = calibration_clips(args.data, args.calibration_clips)
    pairs = corpus_test_pairs(args.data, limit=args.clips)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dfkd-int8-") as tmp:
        for arch in args.arch.split(","):
            for preset in args.presets.split(","):
                row = measure(arch, preset, Path(tmp), args, calibration, pairs)
                rows.append(row)
                ms = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in row["seconds_per_call"].items())
                print(f"{arch}/{preset}: {ms}", flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps({"machine": machine_info(), "rows": rows},
                                                          indent=2))
    print()
    print(table(rows, args.threads))
    m = machine_info()
    print(f"\n{m['cpu']}, {m['cores']} cores, load average {m['load_average'][0]}; torch "
          f"{m['torch']}, onnxruntime {m['onnxruntime']}; {args.seconds:g} s input, median of "
          f"{args.rounds} interleaved rounds; quality on {len(pairs)} test clips of {args.data}, "
          f"calibration on {len(calibration)} of its train clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())

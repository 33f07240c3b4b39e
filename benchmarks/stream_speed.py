"""Streaming speed of every causal student, PyTorch vs ONNX Runtime, side by side in one run.

For each causal preset (`*-causal` of :data:`dfkd.models.CAUSAL_PRESETS` except the test-only
`mini-causal`; named `arch/preset`, a bare preset is Conv-TasNet's; DCCRN-CL's `tiny-causal` and
`micro-causal` stream one STFT frame per hop): compute time per hop and the real-time factor (time
per hop / hop duration) on one thread, for the PyTorch step and the exported streaming graph,
timed round-robin (median of the rounds) so that load from other processes falls on both alike;
then ORT over PyTorch. Beside them, the non-causal student of the same size run offline on the
whole clip (what `dfkd enhance` does in chunks; PyTorch, one thread): what streaming costs in
compute against waiting for the file.

    PYTHONPATH=src python benchmarks/stream_speed.py [--seconds 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dfkd import models  # noqa: E402
from dfkd.deploy.stream import OnnxStep, TorchStep, export_streaming  # noqa: E402
from dfkd.deploy.stream_io import time_stream  # noqa: E402
from dfkd.models.complexity import real_time_factor  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--presets", default="tiny-causal,micro-causal,student-causal,"
                        "dccrn/tiny-causal,dccrn/micro-causal,dptnet/tiny-causal,dptnet/micro-causal")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"one thread, {args.seconds:g} s of audio per round, median of {args.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| model | hop ms | latency ms | PyTorch per-hop ms | PyTorch RTF | ORT per-hop ms | "
          "ORT RTF | ORT over PyTorch | non-causal offline RTF | ORT streaming cost / offline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for entry in args.presets.split(","):
            arch, _, preset = entry.rpartition("/")
            arch = arch or "convtasnet"
            torch.manual_seed(0)
            model = models.build(arch, preset).eval()
            path = export_streaming(model, Path(tmp) / f"{arch}-{preset}.onnx")
            steps = {"pytorch": TorchStep(model), "ort": OnnxStep(path, threads=1)}
            offline_model = models.build(arch, preset.removesuffix("-causal")).eval()
            times: dict[str, list[dict]] = {name: [] for name in steps}
            offline: list[float] = []
            for _ in range(args.rounds):  # round-robin: one round of each engine in turn
                for name, step in steps.items():
                    times[name].append(time_stream(step, seconds=args.seconds, rounds=1))
                offline.append(real_time_factor(offline_model, seconds=args.seconds, threads=1,
                                                repeats=1))
            med = {name: float(np.median([r["per_hop_ms"] for r in rows]))
                   for name, rows in times.items()}
            first = times["pytorch"][0]
            hop_ms = first["hop_ms"]
            print(f"| {arch}/{preset} | {hop_ms:g} | {first['latency_ms']:g} | "
                  f"{med['pytorch']:.3f} | {med['pytorch'] / hop_ms:.3f} | {med['ort']:.3f} | "
                  f"{med['ort'] / hop_ms:.3f} | {med['pytorch'] / med['ort']:.2f}x | "
                  f"{float(np.median(offline)):.4f} | "
                  f"{med['ort'] / hop_ms / float(np.median(offline)):.1f}x |", flush=True)


if __name__ == "__main__":
    main()

"""Deployment speed ratios, measured side by side in one run.

For each architecture, times the ``paper`` teacher and its ``student`` on PyTorch eager, ONNX Runtime
fp32 and ONNX Runtime int8, on one thread and on every core (see :mod:`dfkd.deploy.bench` for the method),
then prints the table and checks the two claims of the deployment section:

* the ``student`` preset is at least 5x faster than its ``paper`` teacher (same engine, threads);
* ONNX Runtime fp32 is no slower than PyTorch eager for the same model.

    .venv/bin/python benchmarks/deploy_speed.py [--arch convtasnet,dptnet,dccrn] [--json out.json]

Exit status 0 unless ``--strict`` and a claim fails (timings on a shared machine are noisy, so the
default only reports). At the end it prints the ratios of every architecture as one markdown table
(the one in ``README.md, "Deployment"``).

PyTorch's OpenMP threads wait passively here (``OMP_WAIT_POLICY=PASSIVE`` unless already set):
with the default active waiting, 2-thread PyTorch on the loaded 2-core development machine took
10-200x longer now and then, which says nothing about the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported (see docstring)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from dfkd.deploy.bench import BenchModel, benchmark, format_table, thread_counts  # noqa: E402
from dfkd.models import ARCHITECTURES, build  # noqa: E402

STUDENT_SPEEDUP = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default=",".join(ARCHITECTURES))
    parser.add_argument("--presets", default="paper,student")
    parser.add_argument("--engines", default="pytorch,onnx-fp32,onnx-int8")
    parser.add_argument("--threads", default="1,all")
    parser.add_argument("--int8-ops", help="operator types quantised for onnx-int8, e.g. MatMul,LSTM")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--budget", type=float, default=40.0, help="timing seconds per architecture")
    parser.add_argument("--json", help="write every architecture's results here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a claim fails")
    args = parser.parse_args()

    presets = args.presets.split(",")
    engines = args.engines.split(",")
    results, failures = {}, []
    for arch in args.arch.split(","):
        models = [BenchModel(f"{arch}/{p}", build(arch, p), arch, p) for p in presets]
        result = benchmark(models, engines=engines, threads=thread_counts(args.threads),
                           seconds=args.seconds, rounds=args.rounds, budget_seconds=args.budget,
                           progress=False,
                           int8_ops=args.int8_ops.split(",") if args.int8_ops else None)
        results[arch] = result.to_dict()
        print(f"== {arch}\n{format_table(result)}\n", flush=True)
        if args.json:  # after every architecture: a run cut short keeps what it measured
            with open(args.json, "w") as handle:
                json.dump(results, handle, indent=2)
        for q in result.ratios:
            if q["kind"] == "student_vs_teacher" and q["speedup"] < STUDENT_SPEEDUP:
                failures.append(f"{q['model']} only {q['speedup']:.2f}x faster than {q['reference']} "
                                f"({q['engine']}, {q['threads']} thread(s)); target {STUDENT_SPEEDUP:g}x")
            if q["kind"] == "onnx_vs_pytorch" and q["speedup"] < 1.0:
                failures.append(f"{q['model']}: ONNX Runtime fp32 {1 / q['speedup']:.2f}x slower than "
                                f"PyTorch eager ({q['threads']} thread(s))")
    print(summary_table(results))
    print("claims: " + ("all hold" if not failures else f"{len(failures)} below target"))
    for line in failures:
        print(f"  - {line}")
    return 1 if failures and args.strict else 0


def summary_table(results: dict) -> str:
    """Every architecture's ratios as one markdown table (rows: ratio and threads; columns: arch)."""
    archs = list(results)
    titles = {"student_vs_teacher": "student over paper, {engine}",
              "onnx_vs_pytorch": "ORT fp32 over PyTorch, {model}",
              "int8_vs_fp32": "ORT int8 over fp32, {model}"}
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for arch in archs:
        for q in results[arch]["ratios"]:
            what = q["engine"] if q["kind"] == "student_vs_teacher" else q["model"].split("/")[-1]
            label = titles[q["kind"]].format(engine=q["engine"], model=what)
            rows.setdefault((label, q["threads"]), {})[arch] = q["speedup"]
    lines = ["| speed-up (same run) | threads | " + " | ".join(archs) + " |",
             "|---|---:|" + "---:|" * len(archs)]
    for (label, threads), values in rows.items():
        cells = " | ".join(f"{values[a]:.2f}x" if a in values else "" for a in archs)
        lines.append(f"| {label} | {threads} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

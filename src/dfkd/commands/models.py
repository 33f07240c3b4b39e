"""`dfkd models`: parameters, MACs and CPU real-time factor of every architecture x preset.

The DFKD paper (arXiv 2502.04711) compares teachers and students by parameters and MACs; this
table puts our presets' numbers side by side, with the measured CPU speed of each.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import models
from ..files import write_json
from ..errors import DfkdError
from ..models.complexity import count_macs, count_params, format_count, real_time_factor

# (title, width); rows are printed as soon as they are measured, so the widths are fixed
_COLUMNS = (("architecture", 12), ("preset", 14), ("params", 9), ("MACs/s", 8),
            ("latency", 8), ("RTF", 6))


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", action="append", choices=models.ARCHITECTURES,
                        help="only this architecture (repeat for several; default: all)")
    parser.add_argument("--preset", action="append",
                        choices=models.PRESETS + models.CAUSAL_PRESETS,
                        help="only this preset (repeat for several; default: all of each "
                        "architecture)")
    parser.add_argument("--threads", type=int, default=_default_threads(),
                        help="CPU threads for the real-time factor (default: all cores, "
                        "%(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="audio length timed for the real-time factor (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per model, median reported (default: %(default)s)")
    parser.add_argument("--no-rtf", action="store_true", help="skip the timing (sizes only, fast)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows to this JSON file")
    parser.add_argument("--pretrained", action="store_true",
                        help="list the committed pretrained models instead (the names dfkd.load takes)")


def list_pretrained(json_path: str | None = None) -> int:
    """Print the committed models (:func:`dfkd.pretrained.pretrained_models`) as a table."""
    from ..checkpoint import load_model
    from ..pretrained import pretrained_models, search_folders

    found = pretrained_models()
    if not found:
        raise DfkdError("no pretrained models found (searched "
                        f"{', '.join(str(f) for f in search_folders())}); see README, 'Python API'")
    rows = []
    print("| name | architecture | params | test SI-SNRi (dB) | test PESQ-WB | file |")
    print("|---|---|---:|---:|---:|---|")
    for entry in found:
        params = count_params(load_model(entry.path))
        rows.append({"name": entry.name, "arch": entry.arch, "preset": entry.preset,
                     "params": params, "test_si_snri": entry.test_si_snri,
                     "test_pesq_wb": entry.test_pesq_wb, "path": str(entry.path)})
        snri = "" if entry.test_si_snri is None else f"{entry.test_si_snri:.2f}"
        pesq = "" if entry.test_pesq_wb is None else f"{entry.test_pesq_wb:.2f}"
        print(f"| {entry.name} | {entry.arch} | {format_count(params)} | {snri} | {pesq} | "
              f"{entry.path} |")
    if json_path:
        write_json(json_path, rows)
    return 0


def measure(arch: str, preset: str, rtf_threads: int | None, seconds: float = 2.0,
            repeats: int = 3) -> dict[str, Any]:
    """One table row: parameters, MACs per second of 16 kHz audio and (optionally) the RTF.

    Args:
        arch: architecture name (see :data:`dfkd.models.ARCHITECTURES`).
        preset: preset name.
        rtf_threads: threads for the real-time factor; ``None`` skips the timing.
        seconds: audio length for the timing.
        repeats: timed runs (median).
    """
    model = models.build(arch, preset)
    row: dict[str, Any] = {
        "arch": arch,
        "preset": preset,
        "status": "ok",
        "params": count_params(model),
        "macs_per_second": count_macs(model, seconds=1.0),
        "latency_ms": models.latency_ms(arch, model.config),
        "rtf": None,
        "rtf_threads": rtf_threads,
        "config": dict(model.config),
    }
    if rtf_threads is not None:
        row["rtf"] = real_time_factor(model, seconds=seconds, threads=rtf_threads, repeats=repeats)
    return row


def _cells(row: dict[str, Any]) -> list[str]:
    if row["status"] != "ok":
        return [row["arch"], row["preset"] or "-", row["status"], "", "", ""]
    rtf = "-" if row["rtf"] is None else f"{row['rtf']:.3f}"
    macs = format_count(row["macs_per_second"])
    # a non-causal model needs the whole input first: no latency figure ("-")
    latency = "-" if row.get("latency_ms") is None else f"{row['latency_ms']:g} ms"
    return [row["arch"], row["preset"], f"{row['params']:,}", macs, latency, rtf]


def _line(cells: list[str]) -> str:
    # a status message may overflow its column; the last columns are then empty anyway
    padded = [cell.ljust(width) if i < 2 else cell.rjust(width)
              for i, (cell, (_, width)) in enumerate(zip(cells, _COLUMNS))]
    if len(cells[2]) > _COLUMNS[2][1]:
        padded = padded[:2] + [cells[2]]
    return "| " + " | ".join(padded) + " |"


def _module_or_none(arch: str):
    try:
        return models.arch_module(arch)
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("dfkd.models"):
            return None  # planned architecture whose module is not written yet
        raise


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        return list_pretrained(args.json)
    if args.threads < 1:
        raise DfkdError(f"--threads must be at least 1, got {args.threads}")
    if args.seconds <= 0 or args.repeats < 1:
        raise DfkdError("--seconds must be positive and --repeats at least 1")
    archs = args.arch or list(models.ARCHITECTURES)
    rtf_threads = None if args.no_rtf else args.threads

    print(_line([title for title, _ in _COLUMNS]))
    print("|" + "|".join(("-" * (width + 1)) + ("-" if i < 2 else ":")
                         for i, (_, width) in enumerate(_COLUMNS)) + "|")
    rows: list[dict[str, Any]] = []
    failures = 0
    for arch in archs:
        module = _module_or_none(arch)
        if module is None:
            row = {"arch": arch, "preset": None, "status": "not available yet"}
            rows.append(row)
            print(_line(_cells(row)), flush=True)
            continue
        for preset in args.preset or list(module.PRESETS):
            if preset not in module.PRESETS:
                row = {"arch": arch, "preset": preset, "status": "preset not defined"}
            else:
                try:
                    row = measure(arch, preset, rtf_threads, args.seconds, args.repeats)
                except Exception as err:  # one broken model should not hide the others' rows
                    failures += 1
                    row = {"arch": arch, "preset": preset,
                           "status": f"failed: {type(err).__name__}: {err}"}
            rows.append(row)
            print(_line(_cells(row)), flush=True)

    if rtf_threads is not None:
        print(f"\nMACs per second of 16 kHz audio; RTF = wall time / audio duration for "
              f"{args.seconds:g} s "
              f"(batch 1, {rtf_threads} thread{'s' if rtf_threads > 1 else ''}, median of "
              f"{args.repeats}); below 1 is faster than real time.")
    else:
        print("\nMACs per second of 16 kHz audio.")
    print("latency: algorithmic latency of a causal (streaming) model, from its framing; "
          "'-': non-causal (needs the whole input).")
    if args.json:
        payload = {"threads": rtf_threads, "rtf_seconds": args.seconds, "rows": rows}
        write_json(args.json, payload, default=str)
        print(f"wrote {args.json}")
    if failures:
        print(f"dfkd models: {failures} model(s) failed to build or run (see the table)",
              file=sys.stderr)
        return 1
    return 0

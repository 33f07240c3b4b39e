"""CPU speed of enhancement models: real-time factor and latency, PyTorch vs ONNX Runtime fp32/int8.

Every (model, engine, thread count, input length) is a *case*. Cases are timed round-robin - one
call of each case per round, several rounds - so that load from other processes on a shared
machine falls on all cases alike and the ratios printed from one run stay meaningful; each case
reports the median of its rounds.

* ``rtf``: wall-clock time to enhance a ``seconds``-long clip (default 4 s) divided by ``seconds``
  (below 1 is faster than real time);
* ``latency_ms``: wall-clock time to enhance a one-second clip, i.e. the delay a caller waits per
  second of audio handed over in one-second chunks.

ONNX Runtime sessions are those of :func:`dfkd.deploy.export.onnx_session` (every graph optimisation,
idle pool threads sleep instead of spinning). PyTorch's OpenMP threads follow ``OMP_WAIT_POLICY``,
which must be set before torch is imported: with the default (active) policy, 2-thread PyTorch on
the loaded 2-core development machine ran 10-200x slower now and then (a spinning thread waits
for a preempted one); ``dfkd bench`` and ``benchmarks/deploy_speed.py`` set ``PASSIVE`` unless
the variable is set, and the policy in force is recorded with the results. A short pause before every timed call lets the previous case's
threads go idle.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DfkdError

ENGINES: tuple[str, ...] = ("pytorch", "onnx-fp32", "onnx-int8")
LATENCY_SECONDS = 1.0
SETTLE_SECONDS = 0.05  # pause before each timed call (see the module docstring)


@dataclass
class BenchModel:
    """A model to time: its label, the module, and its architecture/preset when known.

    ``onnx``: an exported file to time as it is (its ONNX engines only; ``model``, rebuilt from
    the file's metadata or None, then only counts parameters and MACs)."""

    label: str
    model: nn.Module | None
    arch: str = ""
    preset: str = ""
    onnx: Path | None = None

    def engines(self, engines: Sequence[str]) -> list[str]:
        """The engines of ``engines`` this entry can run (no PyTorch for a bare ONNX file)."""
        return [e for e in engines if e != "pytorch" or self.onnx is None]


@dataclass
class BenchRow:
    """Timing of one model on one engine at one thread count."""

    model: str
    arch: str
    preset: str
    params: int
    macs_per_second: int
    engine: str
    threads: int
    rtf: float
    latency_ms: float
    rounds: int


@dataclass
class BenchResult:
    """All rows, the ratios derived from them, and the machine they were measured on."""

    seconds: float
    machine: dict[str, Any]
    rows: list[BenchRow] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "machine": self.machine,
                "rows": [asdict(r) for r in self.rows], "ratios": self.ratios}


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, core count, library versions."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 1, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def thread_counts(spec: str) -> list[int]:
    """``"1,all"`` -> ``[1, cpu_count]`` (duplicates dropped, order kept)."""
    cores = os.cpu_count() or 1
    counts: list[int] = []
    for item in spec.split(","):
        item = item.strip()
        try:
            value = cores if item == "all" else int(item)
        except ValueError as err:
            raise DfkdError(f"--threads: {item!r} is neither a number nor 'all'") from err
        if value < 1:
            raise DfkdError(f"--threads: {value} must be at least 1")
        if value not in counts:
            counts.append(value)
    return counts


def _torch_runner(model: nn.Module, threads: int) -> Callable[[np.ndarray], Any]:
    def run(noisy: np.ndarray):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return model(torch.from_numpy(noisy))

    return run


def _onnx_runner(path: Path, threads: int) -> Callable[[np.ndarray], Any]:
    from .export import onnx_forward, onnx_session

    session = onnx_session(path, threads=threads)
    return lambda noisy: onnx_forward(session, noisy)


def _prepare_onnx(entry: BenchModel, workdir: Path, engines: Sequence[str],
                  int8_ops: Sequence[str] | None) -> dict[str, Path]:
    from .export import export_onnx, quantize_int8
    from .quantize import quantize_for

    paths: dict[str, Path] = {}
    if "onnx-fp32" in engines or "onnx-int8" in engines:
        stem = "".join(c if c.isalnum() else "_" for c in entry.label)
        paths["onnx-fp32"] = (entry.onnx if entry.onnx is not None
                              else export_onnx(entry.model, workdir / f"{stem}.onnx"))
        if "onnx-int8" in engines:
            paths["onnx-int8"] = workdir / f"{stem}.int8.onnx"
            if int8_ops:  # an explicit operator list: dynamic quantisation of those types
                quantize_int8(paths["onnx-fp32"], paths["onnx-int8"], op_types=int8_ops)
            else:  # what `dfkd export --int8` writes for this architecture
                quantize_for(entry.arch, paths["onnx-fp32"], paths["onnx-int8"],
                             clips=_calibration_clips())
    return paths


def _calibration_clips() -> list[np.ndarray]:
    """Calibration for a static-int8 default: the clips `dfkd export --int8` uses without data."""
    from .export import synthetic_pairs
    from .quantize import CALIBRATION_CLIPS

    return [noisy for noisy, _ in synthetic_pairs(count=CALIBRATION_CLIPS, seed=1)]


def benchmark(
    models: Sequence[BenchModel],
    engines: Sequence[str] = ENGINES,
    threads: Sequence[int] = (1,),
    seconds: float = 4.0,
    rounds: int | None = None,
    budget_seconds: float = 60.0,
    progress: bool = True,
    int8_ops: Sequence[str] | None = None,
) -> BenchResult:
    """Time every model on every engine and thread count (see the module docstring).

    ``rounds`` fixes the number of timed rounds; by default it is chosen so that all rounds take
    about ``budget_seconds`` (at least 3, at most 15) after one warm-up round. ``onnx-int8`` is
    the architecture's default scheme (:func:`dfkd.deploy.quantize.quantize_for`, calibrated on
    synthetic clips when static), or, with ``int8_ops``, dynamic quantisation of those types
    (:func:`dfkd.deploy.export.quantize_int8`).
    """
    from tqdm import tqdm

    from ..models.complexity import count_macs

    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise DfkdError(f"unknown engine(s) {', '.join(sorted(unknown))}; choose from {', '.join(ENGINES)}")
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise DfkdError(f"models to time need distinct labels, got {', '.join(labels)}")
    rng = np.random.default_rng(0)
    lengths = {"rtf": seconds, "latency": LATENCY_SECONDS}
    inputs = {key: (rng.standard_normal((1, int(16000 * s))) * 0.1).astype(np.float32)
              for key, s in lengths.items()}
    saved_threads = torch.get_num_threads()
    result = BenchResult(seconds=seconds, machine=machine_info())
    with tempfile.TemporaryDirectory(prefix="dfkd-bench-") as tmp:
        cases: list[tuple[int, str, int, str, Callable]] = []
        for index, entry in enumerate(models):
            if entry.model is not None:
                entry.model.eval()
            onnx_paths = _prepare_onnx(entry, Path(tmp), engines, int8_ops)
            for engine in entry.engines(engines):
                for count in threads:
                    runner = (_torch_runner(entry.model, count) if engine == "pytorch"
                              else _onnx_runner(onnx_paths[engine], count))
                    for key in lengths:
                        cases.append((index, engine, count, key, runner))
        times: dict[tuple, list[float]] = {c[:4]: [] for c in cases}
        try:
            warm = 0.0
            for case in cases:  # warm-up round: allocators, lazy inits, thread pools
                start = time.perf_counter()
                case[4](inputs[case[3]])
                warm += time.perf_counter() - start
            n_rounds = rounds or int(min(15, max(3, budget_seconds // max(warm, 1e-9))))
            for _ in tqdm(range(n_rounds), desc="bench rounds", unit="round", disable=not progress):
                for case in cases:
                    time.sleep(SETTLE_SECONDS)
                    start = time.perf_counter()
                    case[4](inputs[case[3]])
                    times[case[:4]].append(time.perf_counter() - start)
        finally:
            torch.set_num_threads(saved_threads)
    for index, entry in enumerate(models):
        params = sum(p.numel() for p in entry.model.parameters()) if entry.model is not None else 0
        macs = int(count_macs(entry.model, seconds=1.0)) if entry.model is not None else 0
        for engine in entry.engines(engines):
            for count in threads:
                rtf = statistics.median(times[(index, engine, count, "rtf")]) / seconds
                latency = statistics.median(times[(index, engine, count, "latency")]) * 1000
                result.rows.append(BenchRow(entry.label, entry.arch, entry.preset, params, macs,
                                            engine, count, rtf, latency, n_rounds))
    result.ratios = ratios(result.rows, [m.label for m in models], engines, threads)
    return result


def ratios(rows: Sequence[BenchRow], labels: Sequence[str], engines: Sequence[str],
           threads: Sequence[int]) -> list[dict[str, Any]]:
    """Speed-ups (ratio of RTFs, >1 means faster) from one run's rows.

    ``student_vs_teacher``: every model against the first one (the teacher), same engine and
    threads; ``onnx_vs_pytorch``: ONNX Runtime fp32 against PyTorch eager, same model and threads;
    ``int8_vs_fp32``: ONNX Runtime int8 against fp32.
    """
    rtf = {(r.model, r.engine, r.threads): r.rtf for r in rows}
    out: list[dict[str, Any]] = []
    for engine in engines:
        for count in threads:
            for label in labels[1:]:
                if (labels[0], engine, count) not in rtf or (label, engine, count) not in rtf:
                    continue  # an ONNX file has no PyTorch row
                out.append({"kind": "student_vs_teacher", "model": label, "reference": labels[0],
                            "engine": engine, "threads": count,
                            "speedup": rtf[(labels[0], engine, count)] / rtf[(label, engine, count)]})
    pairs = [("onnx_vs_pytorch", "onnx-fp32", "pytorch"), ("int8_vs_fp32", "onnx-int8", "onnx-fp32")]
    for kind, fast, slow in pairs:
        if fast in engines and slow in engines:
            for label in labels:
                for count in threads:
                    if (label, slow, count) not in rtf or (label, fast, count) not in rtf:
                        continue
                    out.append({"kind": kind, "model": label, "engine": fast, "reference": slow,
                                "threads": count,
                                "speedup": rtf[(label, slow, count)] / rtf[(label, fast, count)]})
    return out


def format_table(result: BenchResult) -> str:
    """The rows as an aligned text table, then the ratios, one per line."""
    header = f"{'model':24s} {'params':>8s} {'GMAC/s':>7s} {'engine':10s} {'threads':>7s} {'RTF':>8s} {'ms per 1 s':>10s}"
    lines = [header, "-" * len(header)]
    for r in result.rows:
        lines.append(f"{r.model:24s} {_si(r.params):>8s} {r.macs_per_second / 1e9:7.2f} {r.engine:10s} "
                     f"{r.threads:7d} {r.rtf:8.4f} {r.latency_ms:10.1f}")
    titles = {"student_vs_teacher": "speed-up over the first model (same engine and threads)",
              "onnx_vs_pytorch": "ONNX Runtime fp32 over PyTorch eager (same model and threads)",
              "int8_vs_fp32": "ONNX Runtime int8 over fp32 (same model and threads)"}
    for kind, title in titles.items():
        chosen = [q for q in result.ratios if q["kind"] == kind]
        if chosen:
            lines += ["", title + ":"]
            for q in chosen:
                what = q["model"] if kind != "student_vs_teacher" else f"{q['model']} vs {q['reference']}, {q['engine']}"
                lines.append(f"  {what:52s} {q['threads']:2d} thread(s): {q['speedup']:6.2f}x")
    m = result.machine
    lines += ["", f"{m['cpu']}, {m['cores']} cores; torch {m['torch']}, onnxruntime {m['onnxruntime']}; "
                  f"RTF on {result.seconds:g} s clips, latency on 1 s clips, median of "
                  f"{result.rows[0].rounds if result.rows else 0} rounds; "
                  f"OMP_WAIT_POLICY={m.get('omp_wait_policy', '?')}, load average at start "
                  f"{m.get('load_average', ['?'])[0]}"]
    return "\n".join(lines)


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(int(value))

"""What a run records: ``history.json``, TensorBoard event files under ``tb/`` and a progress bar.

Only DDP rank 0 records anything. ``history.json`` holds ``run`` (what was trained), ``train``
(one record every ``log_every`` steps: losses, the DFKD band losses, gradient norm, the KD/task
gradient-norm ratio method.md asks for, crossover statistics, learning rate, speed) and ``valid``
(one record per validation: SI-SNR, SI-SNRi, PESQ, losses and the crossover histogram in STFT-bin
counts). It is rewritten atomically together with ``last.pt``, so after a kill and ``--resume`` it
holds exactly the records of the steps that survive.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..distill.spectra import N_FFT
from ..files import write_text

N_BINS = N_FFT // 2 + 1


class Averager:
    """Running sums over a logging interval, kept where the values live (one host sync per log)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self._crossover: torch.Tensor | None = None

    def add(self, values: dict[str, torch.Tensor | float]) -> None:
        for key, value in values.items():
            value = value.detach().float() if torch.is_tensor(value) else torch.tensor(float(value))
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def add_crossover(self, bins: torch.Tensor | None) -> None:
        if bins is not None and bins.numel():
            counts = torch.bincount(bins.flatten(), minlength=N_BINS)[:N_BINS]
            self._crossover = counts if self._crossover is None else self._crossover + counts

    @property
    def crossover(self) -> torch.Tensor:
        """Crossover counts per STFT bin over the interval (on the CPU)."""
        if self._crossover is None:
            return torch.zeros(N_BINS, dtype=torch.long)
        return self._crossover.cpu()

    def means(self) -> dict[str, float]:
        return {key: float(total) / self.counts[key] for key, total in self.sums.items()}


def crossover_summary(counts: torch.Tensor, sample_rate: int) -> dict[str, float]:
    """Median and 90th percentile of a crossover histogram, in Hz."""
    total = int(counts.sum())
    if total == 0:
        return {}
    cumulative = torch.cumsum(counts, 0)
    hz_per_bin = sample_rate / N_FFT
    median = int(torch.searchsorted(cumulative, torch.tensor(0.5 * total)).item())
    p90 = int(torch.searchsorted(cumulative, torch.tensor(0.9 * total)).item())
    return {"crossover_median_hz": median * hz_per_bin, "crossover_p90_hz": p90 * hz_per_bin}


def load_history(path: Path, up_to_step: int) -> dict[str, Any]:
    """A previous run's history, without the records of steps after ``up_to_step`` (resume)."""
    if not path.is_file():
        return {"run": {}, "train": [], "valid": []}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, found {type(data).__name__}")
        for kind in ("train", "valid"):
            data[kind] = [r for r in data.get(kind, []) if r["step"] <= up_to_step]
        if not isinstance(data.get("run", {}), dict):
            raise ValueError("'run' is not an object")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        # The checkpoint, not the log, holds the training state: resume, and start a new log.
        damaged = path.with_name(path.name + ".damaged")
        os.replace(path, damaged)
        print(f"dfkd: {path}: damaged ({type(err).__name__}: {err}); resuming from the checkpoint "
              f"at step {up_to_step} with a new history (records before it are lost; the damaged "
              f"file is kept as {damaged.name})", file=sys.stderr)
        return {"run": {}, "train": [], "valid": []}
    return data


class _NoEvents:
    """Stands in for TensorBoard's SummaryWriter where the package is missing: writes nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class RunLog:
    """History, TensorBoard and progress bar of one run (inactive on ranks other than 0).

    Args:
        out_dir: the run folder.
        enabled: whether this process writes (DDP rank 0).
        start_step: the step the run starts or resumes at.
        total_steps: the run's length (for the progress bar's ETA).
        run_info: what was trained (stored under ``run``).
        progress: show a tqdm bar.
        sample_rate: for crossover frequencies in Hz.
    """

    def __init__(
        self,
        out_dir: Path,
        enabled: bool,
        start_step: int,
        total_steps: int,
        run_info: dict[str, Any],
        progress: bool = True,
        sample_rate: int = 16000,
    ) -> None:
        self.out_dir, self.enabled, self.sample_rate = Path(out_dir), enabled, sample_rate
        self.history = load_history(self.out_dir / "history.json", start_step) if enabled else {}
        if enabled:
            self.history["run"] = {**self.history.get("run", {}), **run_info}
        self.writer = None
        self.bar = None
        if enabled:
            from tqdm import tqdm

            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # a bare machine (a GPU box without the package): history.json only
                self.writer = _NoEvents()
            else:
                # purge_step drops events a killed run wrote after its last checkpoint
                self.writer = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_step or None)
            self.bar = tqdm(
                total=total_steps, initial=start_step, desc=run_info.get("name", "train"),
                unit="step", disable=not progress, dynamic_ncols=True,
            )
        self._last_time = time.monotonic()
        self._last_step = start_step

    def step_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log_train(self, step: int, averager: Averager, lr: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one training record (``extra``: e.g. the two-step schedule's ``phase``)."""
        if not self.enabled:
            return {}
        now = time.monotonic()
        record: dict[str, Any] = {"step": step, **(extra or {}), "lr": lr, **averager.means()}
        record["seconds_per_step"] = (now - self._last_time) / max(step - self._last_step, 1)
        self._last_time, self._last_step = now, step
        record.update(crossover_summary(averager.crossover, self.sample_rate))
        self.history["train"].append(record)
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(f"train/{key}", value, step)
        self._histogram("train/crossover_hz", averager.crossover, step)
        if self.bar is not None:
            postfix = {"loss": f"{record.get('loss', 0.0):.3f}"}
            if "kd" in record:
                postfix["kd"] = f"{record['kd']:.3g}"
            self.bar.set_postfix(postfix, refresh=False)
        return record

    def log_valid(self, step: int, record: dict[str, Any], crossover: torch.Tensor | None) -> None:
        if not self.enabled:
            return
        record = {"step": step, **record}
        if crossover is not None and int(crossover.sum()):
            record.update(crossover_summary(crossover, self.sample_rate))
            record["crossover_counts"] = crossover.tolist()
            self._histogram("valid/crossover_hz", crossover, step)
        self.history["valid"].append(record)
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                self.writer.add_scalar(f"valid/{key}", value, step)
        if self.bar is not None:
            self.bar.write(
                f"step {step}: valid SI-SNR {record.get('si_snr', float('nan')):.2f} dB"
                + (f", PESQ {record['pesq_wb']:.2f}" if "pesq_wb" in record else "")
            )

    def _histogram(self, tag: str, counts: torch.Tensor, step: int) -> None:
        total = int(counts.sum())
        if not total:
            return
        hz = torch.arange(N_BINS, dtype=torch.float64) * (self.sample_rate / N_FFT)
        weights = counts.to(torch.float64)
        self.writer.add_histogram_raw(
            tag, min=float(hz[counts > 0].min()), max=float(hz[counts > 0].max()), num=total,
            sum=float((hz * weights).sum()), sum_squares=float((hz.pow(2) * weights).sum()),
            bucket_limits=hz.tolist(), bucket_counts=counts.tolist(), global_step=step,
        )

    def save(self) -> None:
        """Write ``history.json`` atomically and flush TensorBoard."""
        if not self.enabled:
            return
        text = json.dumps(self.history, indent=1)
        write_text(self.out_dir / "history.json", text)
        self.writer.flush()

    def close(self) -> None:
        if self.enabled:
            self.save()
            self.writer.close()
            self.bar.close()

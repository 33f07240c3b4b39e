"""The comparison grid: architectures x {teacher, ``none``, every KD method, DFKD ablations} x seeds.

:class:`ExperimentRunner` obtains and scores every cell planned by :mod:`dfkd.experiment.plan`:

1. per architecture, the teacher: a pretrained checkpoint (``pretrained/<arch>_<preset>.pt``,
   design.md) or a run trained in the grid with a seed that no student uses (method.md);
2. the lambda sweep: every KD method (each DFKD adapter variant counts as its own method) gets the
   same candidates, ``sweep.factors`` x its default lambda, the same steps and seeds, scored by
   SI-SNR on the validation split; a sweep still rising at its largest lambda goes on upwards
   (``sweep.extend``, :func:`~dfkd.experiment.plan.sweep_extension`); the best candidate is
   chosen (method.md, "Total objective");
3. the final runs: every method x seed at its chosen lambda, the same steps, data and batch size
   for all, scored on the test split (``none``'s, which need no lambda, run beside the sweep);
4. the results (:mod:`dfkd.experiment.results`), figures and ``report.html`` (:mod:`dfkd.experiment.report`).

Nothing is done twice. A cell's training is finished when its run folder holds ``trained.json``
(written after the trainer returns) and its scoring when ``eval-<split>/done.json`` exists (written
after ``summary.json``). A grid interrupted and started again skips finished cells and calls the
trainer again on the half-finished one, which resumes from that run's ``last.pt``. Run folders are
named by a hash of everything that determines the weights, so a changed configuration gets new
runs instead of silently reusing old ones.

The trainer is a function ``trainer(job: TrainJob, run_dir: Path)`` (default:
:func:`dfkd.experiment.jobs.train_job`, which calls :func:`dfkd.training.run.run_training`), so
tests can drive the grid logic with a fast fake.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import sys
import time
from collections import deque
from contextlib import nullcontext
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from ..checkpoint import load_model
from ..errors import DfkdError, TrainingStopped
from .config import ExperimentConfig
from .plan import (
    HELDOUT, SWEEP_METRIC, Cell, TrainJob, default_weight, final_cells, heldout_cells, pick_clips,
    student_cell, sweep_cells, sweep_extension, teacher_cell,
)
from ..evaluation.scoring import default_workers
from ..files import folder_lock, write_json
from .curves import late_gradient_ratio, read_history
from .jobs import train_job
from .record import check_manifest, has_weights, restore, save_cell
from .report import ReportInputs, complexity, write_report
from .tables import write_results
from .results import Results, RunRecord, build_results, late_validation_gain, read_per_file_csv

TrainFunction = Callable[[TrainJob, Path], Any]  # train_job or a test's fake
TRAINED = "trained.json"
EVALUATED = "done.json"


def machine_description() -> str:
    """One line: host, CPU, cores, GPU, torch version; printed under the results table."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:  # the model name is more telling than "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{platform.node() or 'unknown host'} ({cpu}, {default_workers()} cores{gpu}, "
            f"torch {torch.__version__})")


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _write_json(path: Path, payload: Any) -> None:
    write_json(path, payload, default=str)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DfkdError(f"{path}: unreadable ({err}); delete it to redo that step") from err


def _init_worker(threads: int) -> None:
    import signal

    import torch

    from ..training.allocator import keep_freed_memory

    torch.set_num_threads(threads)
    keep_freed_memory()  # ~1.1x faster training steps on a CPU (training/allocator.py)
    # Ctrl-C reaches the whole process group: a worker then stops at once (every file it writes is
    # atomic and its run resumes from last.pt) instead of picking up the next queued cell
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_cell_in_worker(runner: "ExperimentRunner", cell: Cell) -> dict[str, int]:
    return runner.run_cell(cell)


class GridStopped(Exception):
    """The grid reached its ``deadline``: the cells in flight saved their state, none was started
    after it; the same command resumes."""


class ExperimentRunner:
    """Run (or resume) a comparison grid and write its results, figures and report.

    Args:
        config: the grid.
        out: the experiment folder.
        data: the corpus folder (overrides ``config.data``).
        trainer: ``trainer(job, run_dir)``; default :func:`train_job`.
        roots: folders searched for ``pretrained/`` (default: the working directory and the
            folder above the config file).
        progress: show a progress bar over the grid's cells.
        device: where models are scored (default: CUDA when available).
        record: a folder that keeps the small text files of every finished cell
            (:mod:`dfkd.experiment.record`) and gives them back to a grid started in an empty
            experiment folder, so that a long grid survives the loss of its folder.
        parallel_runs: runs trained at once (default: the config's ``parallel_runs``); never part
            of a run's identity. At most one per core; each gets ``cores // parallel_runs`` threads.
        deadline: wall-clock time (``time.time()``) after which no cell is started and the runs in
            flight save ``last.pt`` and stop (a time-limited machine); the same call resumes.
        defer_test_scores: train every cell and score the sweeps (validation SI-SNR, torch alone)
            but leave the test and held-out scores of the teacher and the final runs to a later
            run: for a machine without every metric's package (pesq on a bare GPU box).
    """

    def __init__(self, config: ExperimentConfig, out: str | os.PathLike, data: str | os.PathLike | None = None,
                 *, trainer: TrainFunction | None = None, roots: Sequence[Path] | None = None,
                 progress: bool = True, device: str | None = None,
                 record: str | os.PathLike | None = None, parallel_runs: int | None = None,
                 deadline: float | None = None, defer_test_scores: bool = False) -> None:
        data = data if data is not None else config.data
        if data is None:
            raise DfkdError("no corpus: give --data DIR or set `data:` in the configuration")
        self.config = config
        self.out = Path(out)
        self.data = str(Path(data).resolve())
        if not Path(self.data).exists():
            raise DfkdError(f"{data}: corpus folder not found (build the demo one with `dfkd corpus demo`)")
        heldout = None if defer_test_scores else config.evaluation.heldout  # scored later, elsewhere
        self.heldout = str(Path(heldout).expanduser().resolve()) if heldout else None
        if self.heldout and not Path(self.heldout).is_dir():
            raise DfkdError(f"{heldout}: held-out corpus folder not found (`evaluation.heldout`; "
                            "build one with `dfkd corpus heldout`)")
        self.trainer = trainer or train_job
        if roots is None:
            roots = [Path.cwd()] + ([Path(config.source).resolve().parent.parent] if config.source else [])
        self.roots = list(roots)
        self.progress = progress
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.record_dir = Path(record).expanduser() if record is not None else None
        self.machine = machine_description()
        self._pairs: dict[str, list] = {}
        self.counts = {"trained": 0, "reused": 0, "scored": 0}
        cores = default_workers()
        if parallel_runs is not None and parallel_runs < 1:
            raise DfkdError(f"--parallel-runs must be a positive integer, not {parallel_runs}")
        self.parallel_runs = max(1, min(parallel_runs or config.parallel_runs, cores))
        self.deadline = deadline
        self.defer_test_scores = defer_test_scores
        self.stopped = 0  # cells left unfinished at the deadline
        self.threads_per_run = max(1, cores // self.parallel_runs)
        self._pool: ProcessPoolExecutor | None = None

    # ------------------------------------------------------------------------------- planning
    def pairs(self, split: str) -> list:
        if split not in self._pairs:
            from ..data.layouts import corpus_pairs

            root, corpus_split = (self.heldout, "test") if split == HELDOUT else (self.data, split)
            pairs = corpus_pairs(root, corpus_split)
            if not pairs:
                raise DfkdError(f"{root}: the {corpus_split} split is empty")
            if split in ("test", HELDOUT) and self.config.evaluation.test_clips:
                pairs = [pairs[i] for i in pick_clips(self.config.evaluation.test_clips, len(pairs))]
            self._pairs[split] = pairs
        return self._pairs[split]

    def teachers(self) -> dict[str, Cell]:
        return {a: teacher_cell(self.config, a, self.out, self.data, self.roots)
                for a in self.config.architectures}

    def check_inputs(self) -> dict[str, Cell]:
        """The teachers, after every check of the inputs (teachers, corpus splits); the same for
        ``--dry-run`` and the real run, and before any file is written."""
        from ..data.layouts import corpus_pairs, detect_layout, split_source

        teachers = self.teachers()
        splits = ("test",) if detect_layout(self.data) == "dns" else ("train", "valid", "test")
        for split in splits:
            if split == "test":
                self.pairs(split)
            elif not corpus_pairs(self.data, split):
                raise DfkdError(f"{self.data}: the {split} split is empty (no noisy/clean pairs)")
        source = split_source(self.data, "test")
        if source:
            print(f"dfkd experiment: the test split of {self.data}: {source}", file=sys.stderr)
        return teachers

    def plan(self) -> dict[str, Any]:
        """The cells (finals at the lambdas chosen so far; ``extensions``: how many sweep cells
        ``sweep.extend`` added), with what is done; for ``--dry-run``."""
        plan: dict[str, Any] = {}
        for arch, teacher in self.check_inputs().items():
            base = sweep_cells(self.config, arch, teacher, self.out, self.data)
            sweeps = self.extend_sweep(arch, teacher, base, pending=True)
            chosen, _ = self.choose_weights(arch, sweeps, partial=True)
            finals = final_cells(self.config, arch, teacher, chosen, self.out, self.data)
            plan[arch] = {"teacher": teacher, "sweep": sweeps, "final": finals,
                          "extensions": len(sweeps) - len(base)}
        return plan

    # ------------------------------------------------------------------------------ one cell
    def is_trained(self, cell: Cell) -> bool:
        return cell.job is None or (cell.run_dir / TRAINED).is_file()

    def is_scored(self, cell: Cell) -> bool:
        return (cell.eval_dir / EVALUATED).is_file()

    def is_finished(self, cell: Cell) -> bool:
        """Trained and, unless this grid defers them, scored: nothing left for this call."""
        deferred = self.defer_test_scores and cell.eval_split != "valid"
        return self.is_trained(cell) and (deferred or self.is_scored(cell))

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def device_description(self) -> str:
        """Where this grid trains: ``cpu`` or ``cuda (NVIDIA H200)`` (provenance in trained.json)."""
        if not self.device.startswith("cuda"):
            return self.device
        import torch

        index = int(self.device.split(":")[1]) if ":" in self.device else 0
        return f"{self.device} ({torch.cuda.get_device_name(index)})"

    def ensure_trained(self, cell: Cell) -> None:
        if self.is_trained(cell):
            return
        if self.past_deadline():
            raise GridStopped
        job = cell.job
        if job.teacher is not None and not Path(job.teacher).is_file():
            raise DfkdError(f"{job.teacher}: the teacher's weights are not here (its run came from "
                            f"a record) and {cell.describe()} still needs them; delete the teacher's "
                            "run folder here and in the record to train it again")
        cell.run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        # not part of the identity: where and how fast a run trains never changes what it is
        runtime = {"progress": False, "threads": self.threads_per_run, "device": self.device,
                   **({"deadline": self.deadline} if self.deadline is not None else {})}
        job = replace(job, options={**runtime, **job.options})
        try:
            self.trainer(job, cell.run_dir)  # resumes from last.pt when a previous call was cut
        except TrainingStopped:
            raise GridStopped from None
        if not any((cell.run_dir / n).is_file() for n in ("best.pt", "last.pt")):
            raise DfkdError(f"{cell.run_dir}: training returned without writing best.pt or last.pt")
        _write_json(cell.run_dir / TRAINED, {
            "cell": cell.describe(), "job": cell.job.identity(), "finished": _now(),
            "seconds": round(time.monotonic() - started, 1), "machine": self.machine,
            "device": self.device_description(), "parallel_runs": self.parallel_runs,
        })
        self.counts["trained"] += 1

    def has_valid_files(self) -> bool:
        """False for corpora whose validation mixtures are made on the fly (DNS Challenge)."""
        from ..data.layouts import detect_layout

        return detect_layout(self.data) != "dns"

    def ensure_scored(self, cell: Cell) -> None:
        if self.is_scored(cell):
            return
        source = str(cell.model_path)
        if cell.eval_split == "valid" and not self.has_valid_files():
            source = self._trainer_validation(cell)
        else:
            if not has_weights(cell):
                raise DfkdError(f"{cell.run_dir}: no weights to score {cell.describe()} on the "
                                f"{cell.eval_split} split (its scores came from a record); delete "
                                "that run folder here and in the record to train it again")
            from ..evaluation.evaluate import evaluate_model

            model = load_model(cell.model_path)
            metrics = [SWEEP_METRIC] if cell.eval_split == "valid" else self.config.evaluation.metrics
            workers = self.config.evaluation.workers
            if workers is None:  # one scoring process per core this run may use
                workers = self.threads_per_run
            summary = evaluate_model(model, self.pairs(cell.eval_split), cell.eval_dir,
                                     metrics=metrics, workers=workers, device=self.device,
                                     label=f"{cell.arch} {cell.model}", progress=False)
            if summary.failed:  # the comparisons pair every clip: a run missing some is not scored
                name, error = summary.failed[0]
                raise DfkdError(f"{cell.eval_dir}: {len(summary.failed)} {cell.eval_split} clip(s) "
                                f"could not be scored (first: {name}: {error}); {cell.describe()} "
                                "stays unscored and is scored again when the grid runs next")
        _write_json(cell.eval_dir / EVALUATED, {
            "cell": cell.describe(), "model": source, "finished": _now(), "machine": self.machine,
        })
        self.counts["scored"] += 1

    def _trainer_validation(self, cell: Cell) -> str:
        """The sweep score of a corpus without validation files: the trainer's best validation
        SI-SNR (on its fixed on-the-fly validation mixtures), from the run's ``history.json``."""
        history = _read_json(cell.run_dir / "history.json")
        values = [r[SWEEP_METRIC] for r in history.get("valid", []) if r.get(SWEEP_METRIC) is not None]
        if not values:
            raise DfkdError(f"{cell.run_dir}: history.json holds no validation {SWEEP_METRIC}")
        best = max(v if math.isfinite(v) else -math.inf for v in values)
        _write_json(cell.eval_dir / "summary.json", {
            "label": f"{cell.arch} {cell.model}", "clips": None, "source": "history.json",
            "metrics": {SWEEP_METRIC: {"mean": best, "std": None}},
        })
        return str(cell.run_dir / "history.json")

    def run_cell(self, cell: Cell, bar: tqdm | None = None) -> dict[str, int]:
        """Train and score one cell (whatever is not done yet); returns this call's counts."""
        before = dict(self.counts)
        reused = self.is_finished(cell)
        if bar is not None:
            bar.set_description(cell.describe())
        try:
            self.ensure_trained(cell)
        except GridStopped:
            self.stopped += 1
            if bar is not None:
                bar.update(1)
            return {**{k: self.counts[k] - before[k] for k in self.counts}, "stopped": 1}
        if not (self.defer_test_scores and cell.eval_split != "valid"):
            self.ensure_scored(cell)
        finished = [cell]
        if self.heldout and cell.kind != "sweep":
            # scored on the held-out corpus while the weights are surely here: a record keeps
            # scores, not weights, so a cell recorded without it could never get it later
            held = heldout_cells(self.config, [cell], self.heldout)[0]
            if self.is_scored(held) or has_weights(held):
                self.ensure_scored(held)
                finished.append(held)
        self.save_records(finished)
        if reused:
            self.counts["reused"] += 1
        if bar is not None:
            bar.set_postfix(self.counts, refresh=False)
            bar.update(1)
        return {k: self.counts[k] - before[k] for k in self.counts}

    def save_records(self, cells: Sequence[Cell]) -> None:
        """Copy the finished ones of ``cells`` into the record (when the grid keeps one)."""
        if self.record_dir is None:
            return
        for cell in cells:
            if self.is_trained(cell) and self.is_scored(cell):
                save_cell(cell, self.out, self.record_dir)

    def run_cells(self, cells: Sequence[Cell], bar: tqdm | None = None,
                  then: Callable[[Cell], Sequence[Cell]] | None = None) -> None:
        """Run cells, ``parallel_runs`` at a time in worker processes.

        Small models use two cores poorly inside one process (and very badly when the cores are
        shared), so two runs of one thread each finish about twice as fast as one run of two.
        Every worker writes the same markers as a serial run, so interrupting and resuming works
        the same way.

        ``then(cell)``, called here once ``cell`` is done, returns the cells that had to wait for
        it (a sweep's next lambda, a method's final runs). They go to the front of the queue and
        start as soon as a worker is free, so a chain of dependent runs is not left until the
        other cells are done, where its last links would train alone on an otherwise idle machine.
        """
        queue = deque(cells)
        follow: Callable[[Cell], Sequence[Cell]] = then or (lambda cell: ())

        def after(cell: Cell) -> None:
            if not self.stopped:  # at the deadline nothing new starts
                queue.extendleft(reversed(list(follow(cell))))

        todo = [c for c in cells if not self.is_finished(c)]
        if self.parallel_runs <= 1 or (then is None and len(todo) <= 1):
            while queue:
                cell = queue.popleft()
                self.run_cell(cell, bar)
                after(cell)
            return
        pool = self._worker_pool()
        running: dict[Future, Cell] = {}
        try:
            while queue or running:
                while queue and len(running) < self.parallel_runs:
                    cell = queue.popleft()
                    if self.is_finished(cell):
                        self.run_cell(cell, bar)  # reused: only counted
                        after(cell)
                    else:
                        running[pool.submit(_run_cell_in_worker, self, cell)] = cell
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = running.pop(future)
                    for key, value in future.result().items():
                        if key == "stopped":
                            self.stopped += value
                        else:
                            self.counts[key] += value
                    if bar is not None:
                        bar.set_description(cell.describe())
                        bar.set_postfix(self.counts, refresh=False)
                        bar.update(1)
                    after(cell)
        except BaseException:
            for future in running:
                future.cancel()
            raise

    def _worker_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing

            # spawn: a fresh interpreter per worker, no forked copy of this process's torch state
            self._pool = ProcessPoolExecutor(
                self.parallel_runs, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.threads_per_run,))
        return self._pool

    def close(self) -> None:
        """Stop the worker processes (if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:
        # what a worker needs: everything but the pool itself
        state = dict(self.__dict__)
        state["_pool"] = None
        state["parallel_runs"] = 1
        return state

    # ------------------------------------------------------------------------------ sweeping
    def choose_weights(self, arch: str, cells: Sequence[Cell], partial: bool = False
                       ) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        """Per KD variant, the lambda with the best mean validation SI-SNR over the sweep seeds.

        A diverged run (non-finite score) loses. Ties go to the lambda closest to the default, so
        the choice does not depend on the order of the candidates. With ``partial``, variants
        whose sweep is not finished are left out instead of raising.
        """
        chosen: dict[str, float] = {}
        record: dict[str, dict[str, Any]] = {}
        for variant in self.config.variants:
            mine = [c for c in cells if c.model == variant.name]
            if not mine:
                continue
            if not all(self.is_scored(c) for c in mine):
                if partial:
                    continue
                raise DfkdError(f"{arch} {variant.name}: lambda sweep not finished")
            means = self._sweep_scores(mine)
            centre = default_weight(variant)
            best = max(means, key=lambda lam: (means[lam], -abs(math.log(lam / centre))))
            chosen[variant.name] = best
            record[variant.name] = {"chosen": best, "candidates": means, "metric": f"valid {SWEEP_METRIC}",
                                    "seeds": list(self.config.sweep_seeds), "steps": self.config.sweep_steps,
                                    "grad_ratio": self._gradient_ratios(mine)}
        return chosen, record

    @staticmethod
    def _sweep_scores(cells: Sequence[Cell]) -> dict[float, float]:
        """lambda -> mean validation score (a diverged run: -inf) over the scored sweep ``cells``
        of one variant."""
        scores: dict[float, list[float]] = {}
        for cell in cells:
            value = _read_json(cell.eval_dir / "summary.json")["metrics"][SWEEP_METRIC]["mean"]
            scores.setdefault(cell.kd_weight, []).append(
                value if value is not None and math.isfinite(value) else -math.inf)
        return {lam: sum(v) / len(v) for lam, v in scores.items()}

    @staticmethod
    def _gradient_ratios(cells: Sequence[Cell]) -> dict[float, float]:
        """lambda -> mean logged KD/task gradient ratio (why a lambda works) of the sweep ``cells``
        whose history logged one."""
        ratios: dict[float, list[float]] = {}
        for cell in cells:
            history = read_history(cell.run_dir)
            ratio = late_gradient_ratio(history) if history is not None else None
            if ratio is not None:
                ratios.setdefault(cell.kd_weight, []).append(ratio)
        return {lam: sum(v) / len(v) for lam, v in ratios.items()}

    def sweep_extensions(self, arch: str, teacher: Cell, cells: Sequence[Cell]) -> list[Cell]:
        """The next candidate (every sweep seed) of each KD variant whose sweep in ``cells`` is
        scored and still rising at its largest lambda (:func:`~.plan.sweep_extension`)."""
        more: list[Cell] = []
        for variant in self.config.variants:
            mine = [c for c in cells if c.model == variant.name]
            if not variant.is_kd or not mine or not all(self.is_scored(c) for c in mine):
                continue
            lam = sweep_extension(self.config, variant, self._sweep_scores(mine))
            if lam is not None:
                more += [student_cell(self.config, arch, variant, lam, seed, self.config.sweep_steps,
                                      "sweep", teacher, self.out, self.data)
                         for seed in self.config.sweep_seeds]
        return more

    def extend_sweep(self, arch: str, teacher: Cell, cells: Sequence[Cell], pending: bool = False
                     ) -> list[Cell]:
        """``cells`` (a sweep) with the extensions of ``sweep.extend`` already scored (a report),
        or with ``pending`` also the next ones to run (``--dry-run``)."""
        cells = list(cells)
        while not self.stopped:
            more = [c for c in self.sweep_extensions(arch, teacher, cells) if pending or self.is_scored(c)]
            if not more:
                break
            cells += more
        return cells

    def sweep_settled(self, arch: str, teacher: Cell, cells: Sequence[Cell]) -> bool:
        """Every run of the sweep ``cells`` scored and none still rising: the lambdas can be chosen."""
        return all(self.is_scored(c) for c in cells) and not self.sweep_extensions(arch, teacher, cells)

    def run_sweep(self, arch: str, teacher: Cell, sweep: Sequence[Cell], untuned: Sequence[Cell],
                  bar: tqdm | None = None) -> list[Cell]:
        """Train and score the lambda sweep of ``arch`` with its extensions (``sweep.extend``), and
        each KD method's final runs as soon as its lambda is settled; ``untuned`` (``none``'s
        finals, which need no lambda) first, as the longer runs. Returns the sweep cells, the
        extensions included.

        Nothing waits for a batch: a method's sweep that is still rising gets its next lambda, and
        a settled one its finals, as soon as its last sweep run is scored (:meth:`run_cells`).
        """
        cells = list(sweep)
        growing = {v.name for v in self.config.variants if v.is_kd}  # lambda not settled yet

        def then(done: Cell) -> list[Cell]:
            if done.kind != "sweep" or done.model not in growing:
                return []
            mine = [c for c in cells if c.model == done.model]
            if not all(self.is_scored(c) for c in mine):
                return []  # another seed of this candidate, or another candidate, still runs
            more = self.sweep_extensions(arch, teacher, mine)
            if not more:
                growing.discard(done.model)
                chosen, _ = self.choose_weights(arch, mine)
                more = [c for c in final_cells(self.config, arch, teacher, chosen, self.out, self.data)
                        if c.model == done.model]
            else:
                cells.extend(more)
                if bar is not None:
                    bar.total += len(more)
                    bar.refresh()
            return more

        self.run_cells([*untuned, *sweep], bar, then=then)
        return cells

    # ---------------------------------------------------------------------------- collecting
    def record(self, cell: Cell) -> RunRecord:
        """The table's view of a scored cell."""
        scores, noisy = read_per_file_csv(cell.eval_dir / "per_file.csv")
        trained = _read_json(cell.run_dir / TRAINED) if cell.job is not None else {}
        scored = _read_json(cell.eval_dir / EVALUATED)
        preset = cell.job.preset if cell.job is not None else self.config.teacher.preset
        return RunRecord(
            arch=cell.arch, model=cell.model, seed=cell.seed, scores=scores, noisy_scores=noisy,
            preset=preset, kd_weight=cell.kd_weight if cell.model not in ("teacher", "none") else None,
            steps=cell.job.steps if cell.job is not None else None,
            finished=trained.get("finished") or scored.get("finished"),
            machine=trained.get("machine") or scored.get("machine"), source=str(cell.model_path),
            pretrained=cell.checkpoint is not None, late_gain_db=self._late_gain(cell),
        )

    @staticmethod
    def _late_gain(cell: Cell) -> float | None:
        history = cell.run_dir / "history.json"
        if cell.job is None or not history.is_file():
            return None
        return late_validation_gain(_read_json(history))

    def results(self, cells: Sequence[Cell], sweeps: dict[str, dict[str, Any]]) -> Results:
        records = [self.record(c) for c in cells if self.is_scored(c)]
        for record in records if self.config.evaluation.complexity else ():
            sizes = complexity(self.out, self.config.evaluation, self.machine, record.arch,
                               record.preset, record.source)
            record.params, record.macs, record.rtf = sizes["params"], sizes["macs"], sizes["rtf"]
        return build_results(
            records, order=[v.name for v in self.config.variants], sweeps=sweeps,
            rank_metric=self.config.report.rank_metric, lead_target=self.config.report.lead_target_db,
            meta={"config": self.config.source, "name": self.config.name, "data": self.data,
                  "out": str(self.out)},
            methods={v.name: v.method for v in self.config.variants},
        )

    # ------------------------------------------------------------------------------- the grid
    def run(self, report_only: bool = False) -> Results | None:
        """Run every cell not done yet (none with ``report_only``) and write the results.

        Returns ``None``, with no tables written, when the grid stopped at its deadline or defers
        the test scores (the finished cells are in the record all the same)."""
        teachers = self.check_inputs()  # first: a bad teacher or corpus must not leave files behind
        self.out.mkdir(parents=True, exist_ok=True)
        # a report may be rebuilt beside a running grid (it only reads); a second grid may not run
        with nullcontext() if report_only else folder_lock(self.out, "another `dfkd experiment`"):
            return self._run(teachers, report_only)

    def _run(self, teachers: dict[str, Cell], report_only: bool) -> Results | None:
        """:meth:`run` once the inputs are checked and the folder is this process's."""
        if self.record_dir is not None:
            check_manifest(self.record_dir, self.data, self.config.name)
            restored = restore(self.record_dir, self.out)
            if restored:
                print(f"dfkd experiment: {restored} scored cell(s) restored from the record "
                      f"{self.record_dir} (scores and curves; no weights)", file=sys.stderr)
        _write_json(self.out / "experiment.json", {"config": self.config.to_dict(), "data": self.data})
        sweeps = {a: sweep_cells(self.config, a, t, self.out, self.data) for a, t in teachers.items()}
        per_arch_final = len(self.config.variants) * len(self.config.seeds)
        total = len(teachers) + sum(map(len, sweeps.values())) + per_arch_final * len(teachers)
        for arch, teacher in teachers.items():
            if teacher.job is not None and not self.is_trained(teacher) and not report_only:
                # design.md: demo teachers come pretrained; training one is hours on a CPU
                missing = (f" (no pretrained/{arch}_{teacher.job.preset}.pt found)"
                           if str(self.config.teacher.pretrained).lower() == "auto" else "")
                print(f"dfkd experiment: {arch}: the teacher is trained in the grid{missing}: "
                      f"{teacher.job.steps} steps, seed {teacher.seed}", file=sys.stderr)
        scored: list[Cell] = []
        records: dict[str, dict[str, Any]] = {}
        bar = tqdm(total=total, unit="cell", file=sys.stderr, disable=not self.progress or report_only,
                   dynamic_ncols=True, desc="experiment")
        try:
            for arch, teacher in teachers.items():
                # the final runs without a lambda (`none`) need no sweep: they run beside it
                untuned = [c for c in final_cells(self.config, arch, teacher, {}, self.out, self.data)
                           if not next(v for v in self.config.variants if v.name == c.model).is_kd]
                if not report_only:
                    self.run_cell(teacher, bar)  # alone: every student after it reads it
                    # the finals too: a method's start as soon as its lambda is settled
                    sweeps[arch] = self.run_sweep(arch, teacher, sweeps[arch], untuned, bar)
                else:
                    sweeps[arch] = self.extend_sweep(arch, teacher, sweeps[arch])
                if self.stopped and not self.sweep_settled(arch, teacher, sweeps[arch]):
                    break  # at the deadline: the lambdas cannot be chosen before the sweep ends
                chosen, records[arch] = self.choose_weights(arch, sweeps[arch], partial=report_only)
                finals = final_cells(self.config, arch, teacher, chosen, self.out, self.data)
                scored += [teacher, *finals]
                _write_json(self.out / "sweeps.json", records)
                if self.stopped:
                    break
                if self.heldout and not report_only:  # normally done with each cell (run_cell)
                    held = heldout_cells(self.config, [teacher, *finals], self.heldout)
                    lost = [c for c in held if not self.is_scored(c) and not has_weights(c)]
                    if lost:
                        print(f"dfkd experiment: {arch}: {len(lost)} run(s) restored from the "
                              "record without held-out scores: left out of the held-out table",
                              file=sys.stderr)
                    self.run_cells([c for c in held if c not in lost])
                if not report_only and not self.defer_test_scores:  # long grids show progress
                    write_results(self.results(scored, records), self.out)
        finally:
            bar.close()
            self.close()
        if self.stopped or self.defer_test_scores:
            self.save_records([c for cells in sweeps.values() for c in cells] + scored)
            return None
        if not any(self.is_scored(c) for c in scored):
            raise DfkdError(f"{self.out}: no evaluated runs yet; run the grid without --report-only")
        every = [c for cells in sweeps.values() for c in cells] + scored
        self.save_records(every + (heldout_cells(self.config, scored, self.heldout) if self.heldout else []))
        results = self.results(scored, records)
        write_results(results, self.out)
        if self.heldout:  # the same table on speakers and noise kinds the training never saw
            held = [c for c in heldout_cells(self.config, scored, self.heldout) if self.is_scored(c)]
            if held:
                write_results(self.results(held, records), self.out / HELDOUT)
        write_report(self.report_inputs(teachers, scored), results)
        return results

    def report_inputs(self, teachers: dict[str, Cell], finals: Sequence[Cell]) -> ReportInputs:
        """What the report needs of this grid, as plain data."""
        has_dfkd = any(v.method == "dfkd" for v in self.config.variants)
        return ReportInputs(
            config=self.config, out=self.out, teachers=dict(teachers), finals=list(finals),
            scored=[c for c in [*teachers.values(), *finals] if self.is_scored(c)],
            ready_teachers=frozenset(a for a, t in teachers.items()  # trained, weights here
                                     if (t.checkpoint is not None or self.is_trained(t))
                                     and has_weights(t)),
            test_pairs=self.pairs("test"),
            valid_pairs=self.pairs("valid") if has_dfkd and self.has_valid_files() else None,
            device=self.device, machine=self.machine,
        )

"""`dfkd experiment`: run the comparison grid and write the results table, figures and report.

    dfkd experiment --config configs/demo.yaml --out results/demo [--data DIR] [--arch A,B]
                    [--record DIR] [--dry-run] [--report-only] [--device cpu|cuda] [--quiet]
                    [--parallel-runs N] [--deadline SECONDS] [--defer-test-scores]

Finished cells are reused, so the same command resumes an interrupted grid. With ``--record DIR``
the scores and curves of every finished cell are also kept in DIR (small text files, fit to commit)
and given back to a grid whose folder was lost (dfkd.experiment.record).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import DfkdError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML (configs/demo.yaml, ...)")
    parser.add_argument("--out", required=True, help="experiment folder (runs, results, report)")
    parser.add_argument("--data", default=None, help="corpus folder (default: the config's `data`)")
    parser.add_argument("--arch", default=None,
                        help="only these of the config's architectures (comma-separated), e.g. the "
                             "ones whose teacher already leads; their cells are the same as in the "
                             "whole grid, so a later run of all reuses them")
    parser.add_argument("--record", default=None, metavar="DIR",
                        help="keep the scores and curves of every finished cell in DIR (text, no "
                             "weights) and restore them into --out first: a long grid then survives "
                             "the loss of its experiment folder")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the cells and how many are done; train nothing")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild results and report from the finished runs; train nothing")
    parser.add_argument("--device", default=None, help="device for scoring (default: cuda if available)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--parallel-runs", type=int, default=None, metavar="N",
                        help="train N runs at once (default: the config's parallel_runs; at most "
                             "one per core); not part of any run's identity")
    parser.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                        help="SECONDS from now, start no cell and let the runs in flight save "
                             "last.pt and stop (a time-limited machine); the same command resumes")
    parser.add_argument("--defer-test-scores", action="store_true",
                        help="train every cell and score the sweeps, but leave the test and "
                             "held-out scores of teachers and final runs to a later run (a machine "
                             "without pesq/pystoi, e.g. a bare GPU box); writes no tables")


def _dry_run(runner) -> int:
    from ..experiment.plan import total_steps

    plan = runner.plan()
    trained_teachers = 0
    for arch, cells in plan.items():
        teacher = cells["teacher"]
        if teacher.checkpoint is not None:
            print(f"{arch}: pretrained teacher {teacher.checkpoint}")
        else:
            trained_teachers += 1
            state = "done" if runner.is_scored(teacher) else "to do"
            print(f"{arch}: teacher trained in the grid, seed {teacher.seed} ({state})")
        for kind in ("sweep", "final"):
            done = sum(runner.is_trained(c) and runner.is_scored(c) for c in cells[kind])
            extended = cells["extensions"] if kind == "sweep" else 0
            more = f" ({extended} of them above sweep.factors: sweep.extend)" if extended else ""
            print(f"{arch}: {len(cells[kind])} {kind} runs{more}, {done} done")
    if runner.record_dir is not None:
        from ..experiment.record import recorded_cells

        print(f"record {runner.record_dir}: {recorded_cells(runner.record_dir)} scored cell(s) kept, "
              "restored into the experiment folder when the grid runs")
    steps = total_steps(runner.config, trained_teachers)
    print("training steps asked for (before reuse): "
          + ", ".join(f"{kind} {count}" for kind, count in steps.items()))
    return 0


def only_architectures(config, names: str):
    """The config restricted to the comma-separated ``names`` (each must be one of its own)."""
    from dataclasses import replace

    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in config.architectures]
    if not wanted or unknown:
        raise DfkdError(f"--arch {names!r}: choose among the config's architectures "
                        f"({', '.join(config.architectures)})")
    return replace(config, architectures=tuple(a for a in config.architectures if a in wanted))


def run(args: argparse.Namespace) -> int:
    from ..experiment.runner import ExperimentRunner
    from ..experiment.config import load_config

    if args.dry_run and args.report_only:
        raise DfkdError("--dry-run and --report-only exclude each other")
    if args.report_only and (args.defer_test_scores or args.deadline is not None):
        raise DfkdError("--report-only trains nothing: --deadline and --defer-test-scores have "
                        "nothing to do with it")
    config = load_config(args.config)
    if args.arch:
        config = only_architectures(config, args.arch)
    if args.deadline is not None and args.deadline <= 0:
        raise DfkdError(f"--deadline must be a positive number of seconds, not {args.deadline:g}")
    deadline = None if args.deadline is None else time.time() + args.deadline
    runner = ExperimentRunner(config, args.out, args.data, progress=not args.quiet,
                              device=args.device, record=args.record,
                              parallel_runs=args.parallel_runs, deadline=deadline,
                              defer_test_scores=args.defer_test_scores)
    if args.dry_run:
        return _dry_run(runner)
    if not args.report_only:
        from ..training.allocator import keep_freed_memory

        keep_freed_memory()  # for cells trained in this process (parallel_runs: 1)
    results = runner.run(report_only=args.report_only)
    if results is None:
        state = (f"stopped at the deadline ({runner.stopped} cell(s) unfinished; runs in flight "
                 "saved last.pt)" if runner.stopped else "every cell trained; test scores deferred")
        print(f"dfkd experiment: {state}; this call trained {runner.counts['trained']} and scored "
              f"{runner.counts['scored']} cell(s); the same command resumes, and a run without "
              "--defer-test-scores scores the rest")
        return 0
    out = Path(args.out)
    print((out / "results.md").read_text(encoding="utf-8"))
    print(f"report: {out / 'report.html'}")
    leads = [lead for lead in results.teacher_lead.values() if lead.get("meets_target") is False]
    if leads:
        print("note: a teacher leads its `none` student by less than the target; see results.md")
    return 0

"""Paired per-clip comparison of any two rows of a grid, the report's computation.

The report pairs every row with ``none`` and with the best baseline; this pairs any two, for the
questions those two cannot answer, e.g. what the ``polarity_to: student`` rows gain over the same
method with the clean target's sign (README, "The students' sign"). A row is its folder under
``<experiment>/runs/<arch>/``; its final runs are the ones scored on the split (sweep runs are
scored on ``valid`` only). Seed-averaged clip scores are paired as in ``results.md``
(:func:`dfkd.experiment.results.compare_rows`):

    python benchmarks/paired_rows.py ~/dfkd-study/study/runs/convtasnet dfkd-aligned:dfkd \\
        output-aligned:output [--split test|heldout] [--metric si_snri]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dfkd.errors import DfkdError
from dfkd.experiment.results import RunRecord, compare_rows, read_per_file_csv
from dfkd.experiment.tables import format_comparison


def row_records(row_dir: Path, split: str) -> list[RunRecord]:
    """One record per run of the row scored on ``split`` (``eval-<split>-<tag>/per_file.csv``)."""
    if not row_dir.is_dir():
        raise DfkdError(f"{row_dir}: no such row folder")
    records = []
    for run in sorted(p for p in row_dir.iterdir() if p.is_dir()):
        evals = sorted(run.glob(f"eval-{split}-*/per_file.csv"))
        if not evals:
            continue
        if len(evals) > 1:
            raise DfkdError(f"{run}: {len(evals)} {split} evaluations (other metrics or clips); "
                            "keep one to compare")
        seed = json.loads((run / "trained.json").read_text())["job"]["seed"]
        scores, _ = read_per_file_csv(evals[0])
        records.append(RunRecord(arch=row_dir.parent.name, model=row_dir.name, seed=seed,
                                 scores=scores))
    if not records:
        raise DfkdError(f"{row_dir}: no run scored on the {split} split")
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch_dir", type=Path, help="<experiment>/runs/<arch>")
    parser.add_argument("pairs", nargs="+", help="MODEL:BASELINE row names")
    parser.add_argument("--split", default="test", help="test (default) or heldout")
    parser.add_argument("--metric", default="si_snri")
    args = parser.parse_args()
    try:
        for pair in args.pairs:
            model, sep, baseline = pair.partition(":")
            if not sep or not model or not baseline:
                raise DfkdError(f"{pair}: expected MODEL:BASELINE")
            mine = row_records(args.arch_dir / model, args.split)
            base = row_records(args.arch_dir / baseline, args.split)
            diff = compare_rows(mine, base, args.metric)
            print(f"{model} - {baseline} ({args.split}, {args.metric}, seeds {len(mine)}/{len(base)}): "
                  f"{format_comparison(diff, args.metric)}")
    except DfkdError as error:
        sys.exit(f"paired_rows: {error}")


if __name__ == "__main__":
    main()

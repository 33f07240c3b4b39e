"""Package trained teacher runs as the committed demo teachers (docs/design.md, "Pretrained demo teachers").

For every architecture this copies the final run's ``best.pt`` to ``pretrained/<arch>_small.pt`` and
writes ``pretrained/<arch>_small/`` with what produced it: each training stage's ``config.yaml``
(``stage<N>.yaml``) and ``history.json`` (``stage<N>_history.json``), the commands that retrain it
(``commands.sh``) and its test scores on the demo corpus (``test/summary.{md,json}``,
``test/per_file.csv``, from ``dfkd evaluate``). A teacher may be trained in stages: a later stage
starts from an earlier one's weights (``--init``); a stage cut short on purpose records its
``stop_after``.

Usage::

    python pretrained/package_teachers.py --stages RUNS1 RUNS2 --corpus data/demo_corpus \
        [--out pretrained] [--sources data/teacher_sources]

where ``RUNS<N>/<arch>`` are the run folders of stage N (the last stage is the teacher).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from dfkd.files import atomic_write

ARCHS = ("convtasnet", "dptnet", "dccrn")
MAX_BYTES = 5 * 1024 * 1024  # docs/design.md: each committed teacher <= 5 MB


def stage_command(stage: int, arch: str, run: Path, sources: str, previous: str | None) -> str:
    """The `dfkd train` command that retrains one stage from its committed config."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    parts = [f"dfkd train --config pretrained/{arch}_small/stage{stage}.yaml",
             f"--data {sources}", f"--out runs/teachers/stage{stage}/{arch}"]
    if previous is not None:
        parts.append(f"--init {previous}")
    last = json.loads((run / "history.json").read_text())["train"][-1]["step"]
    if last < config["steps"]:
        # the stage ended early (stop_after, or stopped by hand): the schedule still spans `steps`
        parts.append(f"--set stop_after={last}")
    return " \\\n    ".join(parts)


def package(arch: str, stages: list[Path], corpus: Path, out: Path, sources: str) -> dict:
    folder = out / f"{arch}_small"
    with tempfile.TemporaryDirectory(dir=out) as tmp:  # built aside, moved in whole
        staging = Path(tmp) / folder.name
        staging.mkdir()
        commands = ["#!/bin/sh", f"# Retrain the {arch} demo teacher from scratch (seed in the configs).",
                    "# Sources: python pretrained/make_teacher_sources.py --out " + sources, "set -e"]
        previous = None
        for number, root in enumerate(stages, start=1):
            run = root / arch
            shutil.copy(run / "config.yaml", staging / f"stage{number}.yaml")
            shutil.copy(run / "history.json", staging / f"stage{number}_history.json")
            commands.append(stage_command(number, arch, run, sources, previous))
            previous = f"runs/teachers/stage{number}/{arch}/last.pt"
        commands.append(f"# the teacher: runs/teachers/stage{len(stages)}/{arch}/best.pt "
                        f"(committed as pretrained/{arch}_small.pt)")
        (staging / "commands.sh").write_text("\n".join(commands) + "\n")

        best = stages[-1] / arch / "best.pt"
        if best.stat().st_size > MAX_BYTES:
            raise SystemExit(f"{best}: {best.stat().st_size} bytes, over the 5 MB limit")
        subprocess.run([sys.executable, "-m", "dfkd", "evaluate", "--model", str(best),
                        "--data", str(corpus), "--split", "test", "--out", str(staging / "test"),
                        "--label", f"{arch} small teacher", "--no-progress"], check=True)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        atomic_write(out / f"{arch}_small.pt", lambda tmp: shutil.copy(best, tmp))
    summary = json.loads((folder / "test" / "summary.json").read_text())
    return {"arch": arch, "bytes": (out / f"{arch}_small.pt").stat().st_size, "test": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", type=Path, nargs="+", required=True,
                        help="folders holding <arch>/ run folders, first stage first")
    parser.add_argument("--corpus", type=Path, required=True, help="the demo corpus (its test split)")
    parser.add_argument("--out", type=Path, default=Path("pretrained"))
    parser.add_argument("--sources", default="data/teacher_sources",
                        help="where the retraining commands expect make_teacher_sources.py's output")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS))
    args = parser.parse_args(argv)
    for arch in args.archs:
        result = package(arch, args.stages, args.corpus, args.out, args.sources)
        print(f"{arch}: {result['bytes'] / 1e6:.2f} MB -> {args.out}/{arch}_small.pt", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

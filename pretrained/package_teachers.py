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
    python pretrained/package_teachers.py --after pretrained --stages runs/teachers/stage3 \
        --corpus data/demo_corpus --sources data/teacher_sources_varied --varied \
        --archs convtasnet dccrn

where ``RUNS<N>/<arch>`` are the run folders of stage N (the last stage is the teacher).
``--after DIR`` continues the committed records of ``DIR/<arch>_small/``: their stages and commands
come first, and the given stages follow, the first of them started (``--init``) from the last
committed stage's ``best.pt`` (the committed teacher; ``train_teachers.py --init pretrained``).
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


def committed_stages(folder: Path) -> int:
    """How many stages the committed records in ``folder`` (``stage<N>.yaml``) hold."""
    count = 0
    while (folder / f"stage{count + 1}.yaml").is_file():
        count += 1
    if count == 0:
        raise SystemExit(f"{folder}: no stage1.yaml; --after takes the folder holding <arch>_small/")
    return count


def package(arch: str, stages: list[Path], corpus: Path, out: Path, sources: str,
            after: Path | None = None, varied: bool = False) -> dict:
    folder = out / f"{arch}_small"
    sources_line = ("# Sources: python pretrained/make_teacher_sources.py --out " + sources
                    + (" --varied" if varied else ""))
    with tempfile.TemporaryDirectory(dir=out) as tmp:  # built aside, moved in whole
        staging = Path(tmp) / folder.name
        staging.mkdir()
        commands = ["#!/bin/sh", f"# Retrain the {arch} demo teacher from scratch (seed in the configs).",
                    sources_line, "set -e"]
        previous, first = None, 1
        if after is not None:  # the committed stages first, as they were recorded
            old = after / f"{arch}_small"
            done = committed_stages(old)
            for number in range(1, done + 1):
                for name in (f"stage{number}.yaml", f"stage{number}_history.json"):
                    shutil.copy(old / name, staging / name)
            kept = [line for line in (old / "commands.sh").read_text().splitlines()
                    if not line.startswith("# the teacher:")]
            commands = kept + [f"# stage {done + 1} on:", sources_line.replace("# Sources: ", "#   ")]
            previous, first = f"runs/teachers/stage{done}/{arch}/best.pt", done + 1
        for number, root in enumerate(stages, start=first):
            run = root / arch
            shutil.copy(run / "config.yaml", staging / f"stage{number}.yaml")
            shutil.copy(run / "history.json", staging / f"stage{number}_history.json")
            commands.append(stage_command(number, arch, run, sources, previous))
            previous = f"runs/teachers/stage{number}/{arch}/last.pt"
        commands.append(f"# the teacher: runs/teachers/stage{first + len(stages) - 1}/{arch}/best.pt "
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
    parser.add_argument("--after", type=Path, default=None, metavar="DIR",
                        help="continue the committed records of DIR/<arch>_small/ (their stages first)")
    parser.add_argument("--varied", action="store_true",
                        help="the new stages' sources were made with make_teacher_sources.py --varied")
    args = parser.parse_args(argv)
    for arch in args.archs:
        result = package(arch, args.stages, args.corpus, args.out, args.sources, args.after, args.varied)
        print(f"{arch}: {result['bytes'] / 1e6:.2f} MB -> {args.out}/{arch}_small.pt", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

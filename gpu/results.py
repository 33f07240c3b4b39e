"""What a GPU session brings back, in one tar, and how the CPU takes it in.

``pack`` (on the GPU machine, periodically and at the end) writes one ``.tar.gz`` holding

* ``record/``: the grid's record (:mod:`dfkd.experiment.record`): the text files of every cell
  that is trained *and* scored there (the sweeps: validation SI-SNR needs only torch);
* ``runs/``: the run folders the record cannot hold yet, with their weights: final runs trained
  there whose test scores wait for a machine with pesq (``trained.json``, ``config.yaml``,
  ``history.json``, ``best.pt``), and runs stopped at the deadline (``last.pt`` too, to resume);
* ``teachers/``: teachers trained by ``pretrained/train_teachers.py`` (with ``--teachers``);
* ``session.json``: where, when and with what this was made.

``restore`` (on the CPU) merges ``record/`` into the committed record (files it lacks; a file it
already holds wins and is reported when it differs) and ``runs/`` into the experiment folder
(where that folder has neither the finished run nor a run further along). Then the ordinary
``dfkd experiment ... --record records/study`` restores the recorded cells, scores the trained
final runs and resumes the stopped ones: nothing the GPU did is done again.

    python gpu/results.py pack --out EXP --record REC [--teachers DIR] --tar $OUT/record.tar.gz
    python gpu/results.py restore --tar record.tar.gz --record records/study --out ~/dfkd-study/study
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

RUN_KEPT = ("trained.json", "config.yaml", "history.json", "best.pt", "last.pt")
TEACHER_KEPT = ("config.yaml", "history.json", "best.pt", "last.pt")
MAX_TAR_BYTES = 16 * 2**20  # what one file back from the GPU machine may weigh


def _test_scored(run: Path, out: Path, record: Path) -> bool:
    """The record holds this run trained and scored on the test split: its weights can stay."""
    mirror = record / run.relative_to(out)
    return (mirror / "trained.json").is_file() and any(mirror.glob("eval-test-*/done.json"))


def pending_runs(out: Path, record: Path) -> list[Path]:
    """Run folders with weights whose test scores are not recorded: runs stopped at the deadline,
    final runs waiting for their test scores, and the sweep runs (small, and they let the CPU
    score any of them later). Which sweep run is also a final run is the grid's business."""
    runs = sorted({p.parent for name in ("best.pt", "last.pt") for p in (out / "runs").rglob(name)})
    return [r for r in runs if not _test_scored(r, out, record)]


def _step_times(runs: list[Path]) -> dict[str, float] | None:
    """Median and range of the last logged seconds per step of runs trained here: with many runs
    at once on one GPU, what one run got (the next session's plan is made from it)."""
    times = []
    for run in runs:
        try:
            train = json.loads((run / "history.json").read_text(encoding="utf-8")).get("train") or []
        except (OSError, ValueError):
            continue
        if train and train[-1].get("seconds_per_step"):
            times.append(float(train[-1]["seconds_per_step"]))
    if not times:
        return None
    times.sort()
    return {"runs": len(times), "median": times[len(times) // 2], "min": times[0], "max": times[-1]}


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    data = path.read_bytes()  # read once: a file replaced while packing is taken whole or not at all
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), int(path.stat().st_mtime)
    tar.addfile(info, io.BytesIO(data))


def pack(out: Path | None, record: Path | None, tar_path: Path, teachers: Path | None,
         note: dict) -> int:
    """Write the tar atomically (a command killed mid-write leaves the previous one whole).

    ``out`` and ``record``: the grid's experiment folder and record; ``teachers``: one teacher's
    run folder of ``train_teachers.py`` (its ``<name>.log`` beside it goes along)."""
    started = time.time()
    tmp = tar_path.with_name(f".{tar_path.name}.{os.getpid()}.partial")
    record = record if record is not None else Path("/nonexistent")
    pending = pending_runs(out, record) if out is not None and (out / "runs").is_dir() else []
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(record.rglob("*")) if record.is_dir() else []:
            if path.is_file():
                _add(tar, path, f"record/{path.relative_to(record).as_posix()}")
        for run in pending:
            trained = (run / "trained.json").is_file()
            for name in RUN_KEPT:  # a trained run needs best.pt alone; a stopped one last.pt too
                if (run / name).is_file() and not (trained and name == "last.pt"):
                    _add(tar, run / name, f"runs/{run.relative_to(out / 'runs').as_posix()}/{name}")
        if teachers is not None and teachers.is_dir():
            finished = _teacher_finished(teachers)
            for path in sorted(teachers.glob("*")):  # last.pt (3x best.pt) only to resume
                if path.name in TEACHER_KEPT and not (finished and path.name == "last.pt"):
                    _add(tar, path, f"teachers/{teachers.name}/{path.name}")
            log = teachers.with_name(f"{teachers.name}.log")
            if log.is_file():
                _add(tar, log, f"teachers/{log.name}")
        session = {**note, "packed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "pending_runs": len(pending), "seconds_per_step": _step_times(pending),
                   "recorded_cells": sum(1 for _ in record.rglob("done.json"))}
        data = json.dumps(session, indent=1).encode()
        info = tarfile.TarInfo("session.json")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    # the periodic packer and the last pack may overlap: a pack never replaces a newer tar
    with open(Path(tempfile.gettempdir()) / f"dfkd-pack-{os.getuid()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tar_path.is_file() and tar_path.stat().st_mtime > started:
            tmp.unlink()
            return 0
        os.replace(tmp, tar_path)
    size = tar_path.stat().st_size
    print(f"{tar_path}: {session['recorded_cells']} recorded cell(s), {len(pending)} run(s) with "
          f"weights, {size / 1e6:.1f} MB", flush=True)
    if size > MAX_TAR_BYTES:
        print(f"warning: {tar_path} is over {MAX_TAR_BYTES // 2**20} MiB and will not come back "
              "from the GPU machine", file=sys.stderr)
    return 0


def _teacher_finished(run: Path) -> bool:
    """Whether a `dfkd train` run reached its ``steps`` (its last.pt is then not needed)."""
    import yaml

    try:
        steps = int(yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))["steps"])
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return _last_step(run) >= steps


def _last_step(run: Path) -> int:
    """How far a run folder got: its steps when trained, else last.pt's step, else -1."""
    if (run / "trained.json").is_file():
        return sys.maxsize
    if not (run / "last.pt").is_file():
        return -1
    import torch

    return int(torch.load(run / "last.pt", map_location="cpu", weights_only=False)["step"])


def restore(tar_path: Path, record: Path, out: Path) -> int:
    """Merge the tar into ``record`` and ``out`` (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="dfkd-gpu-") as scratch:
        root = Path(scratch)
        with tarfile.open(tar_path) as tar:
            tar.extractall(root, filter="data")
        session = json.loads((root / "session.json").read_text(encoding="utf-8"))
        theirs, mine = root / "record" / "record.json", record / "record.json"
        if theirs.is_file() and mine.is_file():
            a, b = (json.loads(p.read_text(encoding="utf-8"))["data"] for p in (theirs, mine))
            if a != b:
                sys.exit(f"error: {tar_path} was made on the corpus at {a}, {record} on {b}")
        added = kept = 0
        for path in sorted((root / "record").rglob("*")) if (root / "record").is_dir() else []:
            if not path.is_file():
                continue
            target = record / path.relative_to(root / "record")
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                added += path.name == "done.json"
            elif target.read_bytes() != path.read_bytes() and path.name != "complexity.json":
                kept += 1
        runs = sorted({p.parent for p in (root / "runs").rglob("*") if p.is_file()}) \
            if (root / "runs").is_dir() else []
        taken = 0
        for run in runs:
            target = out / "runs" / run.relative_to(root / "runs")
            if _last_step(target) >= _last_step(run):
                continue  # this machine's run is finished or further along
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(run, target)
            taken += 1
        teachers = root / "teachers"
        if teachers.is_dir():
            shelf = out.parent / f"gpu-teachers-{session.get('packed', 'x')[:19].replace(':', '')}"
            shutil.copytree(teachers, shelf, dirs_exist_ok=True)
            print(f"teachers trained on the GPU machine: {shelf}")
    print(f"{tar_path} ({session.get('machine')}, packed {session.get('packed')}): {added} scored "
          f"cell(s) added to {record}" + (f", {kept} file(s) it already held differently kept as "
                                          "they were" if kept else "")
          + f"; {taken} of {len(runs)} run folder(s) with weights put into {out / 'runs'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("pack", help="the GPU session's record, pending runs and teachers -> one tar")
    p.add_argument("--out", type=Path, default=None, help="the experiment folder")
    p.add_argument("--record", type=Path, default=None)
    p.add_argument("--teachers", type=Path, default=None, help="one teacher's run folder")
    p.add_argument("--tar", type=Path, required=True)
    p.add_argument("--note", default="{}", help="JSON merged into session.json (commit, command)")
    r = sub.add_parser("restore", help="merge a GPU session's tar into the record and --out")
    r.add_argument("--tar", type=Path, required=True)
    r.add_argument("--record", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True, help="the CPU's experiment folder")
    args = parser.parse_args(argv)
    if args.action == "pack":
        return pack(args.out, args.record, args.tar, args.teachers, json.loads(args.note))
    return restore(args.tar, args.record, args.out)


if __name__ == "__main__":
    sys.exit(main())

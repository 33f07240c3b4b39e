"""The grid's record: the small text files of every finished cell, in a folder of their own.

A long grid (the converged study is tens of core-hours on a 2-core CPU) outlives the folder it runs
in when that folder is lost between sessions. Its weights are megabytes and are not needed to
tabulate it; what the tables, the lambda choice, the validation curves and the crossover
histograms read is a few kilobytes per cell. ``dfkd experiment --record DIR`` copies exactly those
files of each cell into ``DIR`` (mirroring the experiment folder) as soon as the cell is trained
and scored, and copies them back into the experiment folder before a run, so that a grid started
in an empty folder skips every recorded cell and trains only the rest. ``DIR`` is plain text
(JSON, CSV, YAML, Markdown) and small enough to commit.

A cell restored from the record has no weights: its scores stand, but it cannot be scored on
anything new (a held-out corpus added later, say) nor played in the report without training it
again (delete its folder in both places).

Run folders are named by a hash that includes the corpus path, so a record only matches a grid run
on a corpus at the same absolute path; ``record.json`` stores that path and a mismatch is an error
instead of a silent retrain of everything.
"""

from __future__ import annotations

import json
from pathlib import Path
from ..errors import DfkdError
from ..files import atomic_write, write_json
from .plan import Cell

RUN_FILES = ("trained.json", "config.yaml", "history.json")  # training: identity, curves, logs
EVAL_FILES = ("per_file.csv", "summary.json", "summary.md", "done.json")  # scores
GRID_FILES = ("complexity.json",)  # sizes and the real-time factor measured where the grid ran
WEIGHTS = ("best.pt", "last.pt")
MANIFEST = "record.json"
# history.json logs a training record every `log_every` steps (400 for a 4000-step run, ~100 kB);
# the record keeps its validation records and run info whole and this many training records,
# evenly spaced with the last one kept: enough for the loss and gradient-ratio curves, ~25 kB
TRAIN_RECORDS_KEPT = 100


def has_weights(cell: Cell) -> bool:
    """Whether the cell's model can be loaded (False for a cell restored from a record)."""
    if cell.checkpoint is not None:
        return Path(cell.checkpoint).is_file()
    return weights_in(cell.run_dir)


def weights_in(run_dir: Path) -> bool:
    """Whether a run folder holds ``best.pt`` or ``last.pt``."""
    return any((run_dir / name).is_file() for name in WEIGHTS)


def _copy(source: Path, target: Path) -> None:
    # atomic: a record interrupted mid-copy never holds half a file that a later run would trust
    data = source.read_bytes()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))


def _thinned_history(source: Path) -> bytes:
    try:
        history = json.loads(source.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DfkdError(f"{source}: unreadable ({err})") from err
    train = history.get("train") or []
    if len(train) > TRAIN_RECORDS_KEPT:
        stride = len(train) / TRAIN_RECORDS_KEPT
        keep = sorted({int(i * stride) for i in range(TRAIN_RECORDS_KEPT - 1)} | {len(train) - 1})
        history = {**history, "train": [train[i] for i in keep],
                   "train_thinned": {"kept": len(keep), "of": len(train)}}
    return json.dumps(history).encode()


def check_manifest(record: Path, data: str, name: str) -> None:
    """Create ``record.json`` or check that the record was made on the same corpus path."""
    path = record / MANIFEST
    if path.is_file():
        try:
            made = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise DfkdError(f"{path}: unreadable ({err})") from err
        if made.get("data") != data:
            raise DfkdError(
                f"{record}: this record was made on the corpus at {made.get('data')}, not {data}; "
                "run folders are named by the corpus path, so give that --data (a copy of the corpus "
                "at that path) or another --record folder")
        return
    record.mkdir(parents=True, exist_ok=True)
    write_json(path, {"data": data, "experiment": name, "files": {
        "grid": list(GRID_FILES), "run": list(RUN_FILES), "eval": list(EVAL_FILES)}})


def save_cell(cell: Cell, out: Path, record: Path) -> int:
    """Copy the cell's recordable files (those that exist and differ) into ``record``; returns how
    many were written. Only called for a cell whose training and scoring are both finished."""
    written = 0
    sources = [out / n for n in GRID_FILES]
    sources += [cell.run_dir / n for n in RUN_FILES] if cell.job is not None else []
    sources += [cell.eval_dir / n for n in EVAL_FILES]
    for source in sources:
        if not source.is_file():
            continue
        target = record / source.relative_to(out)
        data = _thinned_history(source) if source.name == "history.json" else source.read_bytes()
        if target.is_file() and target.read_bytes() == data:
            continue
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
        written += 1
    return written


def restore(record: Path, out: Path) -> int:
    """Copy every recorded file missing from ``out`` into it; returns how many scored cells (each
    ``done.json``) came back. Files already in ``out`` win: they are the newer ones."""
    if not record.is_dir():
        return 0
    restored = 0
    names = set(RUN_FILES) | set(EVAL_FILES)
    for source in sorted(record.rglob("*")):
        top = source.parent == record
        if not source.is_file() or source.name not in (GRID_FILES if top else names):
            continue
        target = out / source.relative_to(record)
        if target.exists():
            continue
        _copy(source, target)
        restored += source.name == "done.json"
    return restored


def recorded_cells(record: Path) -> int:
    """How many scored cells (``done.json`` files) the record keeps."""
    return sum(1 for _ in record.rglob("done.json")) if record.is_dir() else 0



def untrained_model(run_dir: Path):
    """The model a restored run trained, rebuilt with fresh weights from its ``config.yaml``: its
    parameters, MACs and speed are those of the trained one (the report's size columns)."""
    import yaml

    from ..models import build

    path = run_dir / "config.yaml"
    try:
        model = yaml.safe_load(path.read_text(encoding="utf-8"))["model"]
        return build(model["arch"], model["preset"], **(model.get("overrides") or {}))
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise DfkdError(f"{path}: cannot rebuild the run's model ({err})") from err

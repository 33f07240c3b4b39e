"""Atomic file writes: a reader (or a run killed mid-write) never sees half a file.

:func:`atomic_write` is the one primitive (write a temporary file beside the target, fsync, rename);
:func:`write_text` and :func:`write_json` are the text and JSON writers every stage uses on top.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically, line endings exactly as given."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    atomic_write(path, write)


def write_json(path: str | os.PathLike, payload: Any, indent: int | None = 2, **options: Any) -> None:
    """Write ``payload`` as JSON (and a final newline) atomically; ``options`` go to json.dumps."""
    write_text(path, json.dumps(payload, indent=indent, **options) + "\n")

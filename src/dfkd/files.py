"""Atomic file writes: a reader (or a run killed mid-write) never sees half a file.

:func:`atomic_write` is the one primitive (write a temporary file beside the target, fsync, rename);
:func:`write_text` and :func:`write_json` are the text and JSON writers every stage uses on top.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

#: Suffix of the temporary files :func:`atomic_write` creates (hidden: ``.<name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0644 under umask 022)
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process umask; read from /proc where possible (os.umask must set it to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the hidden temp files (``.<name>.*.tmp``) that interrupted atomic writes left in
    ``folder`` (not recursive); returns what was removed. Call it when a run (re)starts there."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for stale in folder.glob(".*" + TEMP_SUFFIX):
            if stale.is_file():
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a UTF-8 text file atomically, line endings exactly as given."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)

    atomic_write(path, write)


def write_json(path: str | os.PathLike, payload: Any, indent: int | None = 2, **options: Any) -> None:
    """Write ``payload`` as JSON (and a final newline) atomically; ``options`` go to json.dumps."""
    write_text(path, json.dumps(payload, indent=indent, **options) + "\n")


def file_digest(path: str | os.PathLike, length: int = 20) -> str:
    """The first ``length`` hex digits of the file's SHA-256, read in 1 MiB blocks (checkpoints,
    ONNX teachers: what a run or a cache entry is keyed on)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]

"""Atomic file writes: a reader (or a run killed mid-write) never sees half a file.

:func:`atomic_write` is the one primitive (write a temporary file beside the target, fsync, rename);
:func:`write_text` and :func:`write_json` are the text and JSON writers every stage uses on top.
:func:`folder_lock` keeps a second process out of a folder that a run or a grid is writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import DfkdError

#: Suffix of the temporary files :func:`atomic_write` creates (hidden: ``.<name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"
#: The lock file :func:`folder_lock` holds in a run or experiment folder (hidden, holds the pid).
LOCK_NAME = ".dfkd.lock"


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


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; while it is held, a second process asking for it gets
    a one-line :class:`DfkdError` naming ``what`` and the holder's pid, instead of both training
    the same runs (two ``nohup dfkd experiment`` started by mistake) and racing on their files.

    An advisory ``flock`` on ``folder/.dfkd.lock``, a file that exists only while it is held: the
    kernel drops the lock when the holder dies, so a killed run leaves no stale lock to clear (at
    most the empty file, which the next holder takes over). A folder this call created and nothing
    else wrote into is removed again, so that a run refused at its start leaves nothing behind.
    Without ``fcntl`` (not POSIX) the block runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        handle = open(path, "a+", encoding="ascii")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise DfkdError(f"{folder}: {what} (pid {holder}) is already running in this folder; "
                            "wait for it to end or stop it first") from None
        try:  # the holder before us may have removed the file between our open and our flock
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        path.unlink(missing_ok=True)  # still held: nobody can take this file over meanwhile
        handle.close()
        if created and not any(folder.iterdir()):
            folder.rmdir()

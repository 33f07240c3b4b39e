"""dfkd.files.folder_lock: one process at a time in a run or experiment folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dfkd.errors import DfkdError
from dfkd.files import LOCK_NAME, folder_lock


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path):
    with folder_lock(tmp_path / "run", "another `dfkd train`"):
        with pytest.raises(DfkdError, match=rf"run: another `dfkd train` \(pid {os.getpid()}\) is "
                                            "already running in this folder; wait for it"):
            with folder_lock(tmp_path / "run", "another `dfkd train`"):
                pass
        (tmp_path / "run" / "last.pt").write_bytes(b"x")
    with folder_lock(tmp_path / "run", "another `dfkd train`"):  # released at the end of the block
        assert (tmp_path / "run" / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]  # no lock file left


def test_a_folder_the_lock_made_and_nothing_filled_is_removed_again(tmp_path):
    with pytest.raises(ValueError):
        with folder_lock(tmp_path / "new" / "run", "x"):
            raise ValueError("a bad config, refused at the start")
    assert not (tmp_path / "new" / "run").exists()  # nothing left behind
    (tmp_path / "kept").mkdir()
    with folder_lock(tmp_path / "kept", "x"):
        pass
    assert (tmp_path / "kept").is_dir()  # it was there before: it stays


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from dfkd.files import folder_lock
        with folder_lock({str(tmp_path)!r}, "x"):
            print("held", flush=True)
            time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DfkdError, match=rf"\(pid {holder.pid}\)"):
            with folder_lock(tmp_path, "x"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops a dead process's flock at once; allow for a slow reap
        try:
            with folder_lock(tmp_path, "x"):
                break
        except DfkdError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)

"""Keep freed memory in the process, so a training step does not fault its tensors in anew.

With glibc's defaults a small model's training step on a CPU spends a tenth of its CPU time in
the kernel: every large temporary tensor (above glibc's adaptive mmap threshold) is unmapped when
freed and faulted in page by page on the next step (~4 000 minor faults a step for a Conv-TasNet
`nano` KD step, ``benchmarks/allocator_settings.py``). Raising the mmap threshold to its maximum
and the trim threshold with it keeps those pages: the step's system time falls from ~6-8 ms to
~0.1 ms, ~1.1x the step's CPU time in all (measured side by side by that benchmark). The cost is a
resident size that stays near its peak, a few tens of MiB for a study run.

This is ``mallopt(3)``, called at run time (the ``MALLOC_*_`` environment variables would have to
be set before the process starts). Other C libraries (musl), or a preloaded allocator such as
tcmalloc (``LD_PRELOAD``, faster still on that benchmark), are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt(3) parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit systems
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
TOP_PAD = 16 << 20

_applied: bool | None = None


def _glibc() -> ctypes.CDLL | None:
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (and mallopt with these parameters)
    except (OSError, AttributeError):
        return None
    return libc


def preloaded_allocator() -> str | None:
    """The allocator ``LD_PRELOAD`` puts in front of the C library's (tcmalloc, jemalloc), if any."""
    for entry in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        name = os.path.basename(entry)
        if "tcmalloc" in name or "jemalloc" in name or "mimalloc" in name:
            return name
    return None


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks in this process (once); returns whether it did.

    A no-op (False) off glibc and when another allocator is preloaded, which has its own rules.
    """
    global _applied
    if _applied is not None:
        return _applied
    libc = None if preloaded_allocator() else _glibc()
    _applied = False
    if libc is not None:
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        # every call returns 1 on success; the mmap threshold first, as it also fixes the
        # (otherwise adaptive) trim threshold, which the second call then raises
        _applied = all(libc.mallopt(param, value) == 1 for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD)))
    return _applied

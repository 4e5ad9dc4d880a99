"""glibc's malloc arenas for a long-running server: two, not eight per core.

glibc gives each thread that allocates its own arena, up to 8 per core. A server answering from a pool of
threads then holds memory freed in one arena that the next request, on another thread, cannot reuse: in
`bench/load.py`'s 30-minute run (20 customers, 2 cores), `kit serve`'s RSS grew 813 -> 967 MB with glibc's
default and 774 -> 820 MB with two arenas, at the same throughput (docs/RELIABILITY.md). The same as
setting MALLOC_ARENA_MAX=2 before the process starts, which an operator's own value overrides.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # from glibc's malloc.h
ENV = "MALLOC_ARENA_MAX"


def limit_arenas(count: int = 2) -> bool:
    """Cap the arenas of threads created from now on; False where libc is not glibc or ``$MALLOC_ARENA_MAX`` is set."""
    if os.environ.get(ENV, "").strip():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_ARENA_MAX, count))

"""kit.malloc: threads of a `kit serve` process share two malloc arenas instead of one each."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Eight threads each keep 2,000 malloc'd buffers (bytes over pymalloc's 512-byte limit) alive at once,
# then glibc's malloc_stats() prints one "Arena N:" block per arena on stderr.
CHILD = """
import ctypes, sys, threading
if sys.argv[1] == "limit":
    from kit.malloc import limit_arenas
    assert limit_arenas()
barrier = threading.Barrier(8)
def work():
    held = [bytes(2048) for _ in range(2000)]
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, check=True)
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_limit_arenas_caps_the_arenas_threads_get() -> None:
    assert arenas("default") > 2
    assert arenas("limit") <= 2


def test_an_operators_malloc_arena_max_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.malloc import limit_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False

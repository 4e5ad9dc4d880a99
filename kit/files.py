"""Files replaced whole or not at all: written under a temporary name beside the target, then renamed.

A process killed mid-write (kill -9, power loss) leaves the old file as it was, never half of a new one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from kit.errors import KitError


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` into ``path`` atomically; a KitError names the file when the disk or permissions refuse."""
    _replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def replace_copy(source: Path, path: Path) -> None:
    """Copy ``source`` over ``path`` atomically."""
    _replace(path, lambda tmp: shutil.copy2(source, tmp))


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        hint = "check the path, permissions and free space"
        raise KitError(f"cannot write {path}: {exc.strerror or exc}", hint) from None

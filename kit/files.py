"""Files replaced whole or not at all: written under a temporary name beside the target, then renamed.

A process killed mid-write (kill -9, power loss) leaves the old file as it was, never half of a new one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kit.errors import KitError

HINT = "check the path, permissions and free space"


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` into ``path`` atomically; a KitError names the file when the disk or permissions refuse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise KitError(
            f"cannot write {path}: {exc.strerror or exc}", "check the path, permissions and free space"
        ) from None


def replace_copy(source: Path, path: Path) -> None:
    """Copy ``source`` over ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path)
    try:
        shutil.copy2(source, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise KitError(
            f"cannot write {path}: {exc.strerror or exc}", "check the path, permissions and free space"
        ) from None

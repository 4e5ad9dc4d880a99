"""Files replaced whole or not at all: written under a temporary name beside the target, then renamed.

A process killed mid-write (kill -9, power loss) leaves the old file as it was, never half of a new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from kit.errors import KitError


def replace_text(path: Path, text: str, *, cache: bool = False) -> bool:
    """Write ``text`` into ``path`` atomically; a KitError names the file when the disk or permissions refuse.
    ``cache``: the file is a cache that can be made again, so a refusal (a read-only model cache in the image) is
    not an error; nothing is written and the answer is False."""
    return replace_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), cache=cache)


def replace_copy(source: Path, path: Path) -> None:
    """Copy ``source`` over ``path`` atomically."""
    replace_with(path, lambda tmp: shutil.copy2(source, tmp))


def replace_with(path: Path, write: Callable[[Path], object], *, cache: bool = False) -> bool:
    """``write(tmp)`` writes the new file under a temporary name beside ``path``, which then replaces ``path``;
    True when it did (``cache`` as in :func:`replace_text`)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if cache:
            return False
        hint = "check the path, permissions and free space"
        raise KitError(f"cannot write {path}: {exc.strerror or exc}", hint) from None
    return True

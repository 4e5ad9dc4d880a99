"""Files replaced whole or not at all (kit/files.py): the one atomic write every module uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.errors import KitError
from kit.files import replace_text, replace_with


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    assert replace_text(target, "old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(KitError, match=r"cannot write .*notes.txt: No space left on device"):
        replace_with(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_cache_that_cannot_be_written_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(KitError, match="cannot write"):
        replace_text(blocker / "entry.json", "{}")
    assert replace_text(blocker / "entry.json", "{}", cache=True) is False
    assert replace_text(tmp_path / "other" / "entry.json", "{}", cache=True) is True
    assert (tmp_path / "other" / "entry.json").read_text() == "{}"

"""What an install of kit carries besides its code: the domain templates, the data formats, the Docker files and
the project files the image installs kit from.

In a source checkout they are where the repository keeps them; a wheel carries a copy under ``kit/_shipped/``
(setup.py's build step calls :func:`stage`). Standard library only: setup.py loads this file by path, before kit's
dependencies exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TEMPLATES = ("retail", "clinic", "travel")
FOLDERS = ("docker", "data_templates")  # copied whole, beside domains/<template>
FILES = ("pyproject.toml", "constraints.txt", "README.md")
PACKAGED = "_shipped"  # the copy's folder inside the installed package
CACHES = ("build", "__pycache__", ".pytest_cache", ".ruff_cache")


def shipped_root() -> Path:
    """The folder holding domains/, docker/, data_templates/ and the project files: the wheel's copy when this is a
    wheel install, else the source checkout."""
    package = Path(__file__).resolve().parent
    copy = package / PACKAGED
    return copy if (copy / "domains").is_dir() else package.parent


def not_copied(folder: str, names: list[str]) -> set[str]:
    """A ``shutil.copytree`` ignore: build output, caches, and a template's own eval results (they measured the
    template, not the shop made from it)."""
    skipped = {n for n in names if n in CACHES or n.endswith(".pyc")}
    return skipped | ({"results"} & set(names) if Path(folder).name == "eval" else set())


def stage(source: Path, dest: Path) -> None:
    """Copy what a wheel carries from the checkout ``source`` to ``dest`` (``<build>/kit/_shipped``)."""
    if dest.exists():
        shutil.rmtree(dest)
    for template in TEMPLATES:
        shutil.copytree(source / "domains" / template, dest / "domains" / template, ignore=not_copied)
    for folder in FOLDERS:
        shutil.copytree(source / folder, dest / folder, ignore=not_copied)
    for name in FILES:
        shutil.copy2(source / name, dest / name)

"""Where the shipped domain templates live."""

from __future__ import annotations

import os
from pathlib import Path

from kit.errors import KitError
from kit.shipped import TEMPLATES as SHIPPED
from kit.shipped import shipped_root


def templates_root() -> Path:
    """The folder holding the shipped templates (`KIT_TEMPLATES` overrides)."""
    override = os.environ.get("KIT_TEMPLATES")
    if override:
        return Path(override)
    return shipped_root() / "domains"


def template_dir(template: str) -> Path:
    """A shipped template by name, or any domain folder by path."""
    as_path = Path(template)
    if (as_path / "domain.yaml").is_file():
        return as_path
    candidate = templates_root() / template
    if (candidate / "domain.yaml").is_file():
        return candidate
    raise KitError(
        f"no template or domain folder called '{template}'",
        f"use one of {', '.join(SHIPPED)}, or the path of a folder holding domain.yaml",
    )

"""The wheel carries the domain templates, the data formats and the Docker files as package data (kit/shipped.py
says what and why); everything else about the build is in pyproject.toml."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def shipped_module() -> ModuleType:
    """kit/shipped.py, loaded by path: kit's dependencies are not installed while the wheel builds."""
    spec = importlib.util.spec_from_file_location("kit_shipped", ROOT / "kit" / "shipped.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithShippedFiles(build_py):
    """build_py, then the shipped files copied into the built package (not into an editable install, which reads
    them from the checkout)."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            shipped = shipped_module()
            shipped.stage(ROOT, Path(self.build_lib) / "kit" / shipped.PACKAGED)


setup(cmdclass={"build_py": BuildWithShippedFiles})

"""Shared fixtures: an isolated kit home, copies of domains to break, and the CLI run in-process."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "data_templates" / "example"
TEMPLATES = ("retail", "clinic", "travel")
# The assistant runtime's fixtures (real model, indexed domain copies, servers on free ports).
pytest_plugins = ["runtime_fixtures"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests away from the user's files; the model cache is shared so models assemble once."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def run_kit(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `kit ARGS...` in this process; return its exit code, stdout and stderr."""
    from kit.cli import main

    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["kit", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A fresh copy of the minimal example domain, to break."""
    dest = tmp_path / "example"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build"))
    return dest


def copy_template(name: str, dest: Path) -> Path:
    """A copy of a shipped template, without its build folder."""
    shutil.copytree(ROOT / "domains" / name, dest, ignore=shutil.ignore_patterns("build"))
    return dest

"""The layers README's Architecture section describes, checked on the code: each module imports only from its own
layer or the ones below it, and no module grows past what one idea needs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "kit"
MAX_LINES = 400
# kit/<top>: its layer; anything not listed (kit/*.py, settings/, validation/) is the foundation, layer 0
LAYERS = {"components": 1, "services": 2, "ui": 3, "server": 3, "commands": 4, "cli": 4, "__main__": 4}
NAMES = {0: "the foundation", 1: "components", 2: "services", 3: "UI and server", 4: "commands and CLI"}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return [name for name in found if name == "kit" or name.startswith("kit.")]


def modules() -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(ROOT).with_suffix("").parts), p) for p in sorted(KIT.rglob("*.py"))]


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [
        f"{name} ({NAMES[layer(name)]}) imports {other} ({NAMES[layer(other)]})"
        for name, path in modules()
        for other in imports(path)
        if layer(other) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_the_ui_calls_services_only() -> None:
    """The UI neither loads a component nor reaches into the server that mounts it (the server, kit serve's
    composition root, may wire components into the services it builds)."""
    crossing = [
        f"{name} imports {other}"
        for name, path in modules()
        if name.split(".")[1] == "ui"
        for other in imports(path)
        if layer(other) == 1 or other.startswith("kit.server")
    ]
    assert not crossing, "\n".join(crossing)


def test_no_module_is_over_400_lines() -> None:
    long = [f"{name}: {n} lines" for name, path in modules() if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not long, "\n".join(long)

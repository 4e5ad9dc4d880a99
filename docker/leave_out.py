"""What the image leaves out of its Python environment.

Print the packages to uninstall to leave out the named ones: each named package that is installed, and every
package only they need (directly or through each other), one name a line:

    python leave_out.py onnxruntime kubernetes | xargs -r pip uninstall -y

Or replace identical copies of a shared library (a wheel cannot hold symbolic links: llama-cpp-python ships
libggml.so, libggml.so.0 and libggml.so.0.25.3 as three copies) by links to one of them:

    python leave_out.py --link-duplicates /opt/venv/lib/python3.11/site-packages/llama_cpp/lib

Run with the environment's own Python (the Dockerfile's builder stage does, for chromadb's dependencies that
kit never uses). Only declared requirements count: an extra ("; extra == ...") is ignored, a marker that does not
hold here too.
"""

from __future__ import annotations

import hashlib
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> dict[str, set[str]]:
    """Each installed distribution and the installed distributions it requires."""
    installed = {canonical(d.metadata["Name"]): d for d in metadata.distributions()}
    needs: dict[str, set[str]] = {}
    for name, dist in installed.items():
        needs[name] = set()
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            if canonical(req.name) in installed:
                needs[name].add(canonical(req.name))
    return needs


def closure(named: list[str], needs: dict[str, set[str]]) -> list[str]:
    """The named packages, then whatever only the leaving set requires, until nothing more qualifies."""
    leaving = {canonical(n) for n in named} & needs.keys()
    changed = True
    while changed:
        changed = False
        for candidate in sorted({r for name in leaving for r in needs[name]} - leaving):
            users = {name for name, reqs in needs.items() if candidate in reqs}
            if users and users <= leaving:
                leaving.add(candidate)
                changed = True
    return sorted(leaving)


def link_duplicates(folder: Path) -> int:
    """Replace files of ``folder`` identical to one with a longer name (libx.so.0.1.2 for libx.so and libx.so.0)
    by relative links to it; the bytes saved."""
    by_content: dict[tuple[int, str], list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink():
            by_content.setdefault((path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()), []).append(path)
    saved = 0
    for (size, _), paths in by_content.items():
        keep = max(paths, key=lambda p: len(p.name))
        for path in paths:
            if path != keep:
                path.unlink()
                path.symlink_to(keep.name)
                saved += size
    return saved


def main() -> None:
    if sys.argv[1:2] == ["--link-duplicates"]:
        saved = sum(link_duplicates(Path(folder)) for folder in sys.argv[2:])
        print(f"linked duplicate files: {saved / 1e6:.1f} MB saved", file=sys.stderr)
        return
    print("\n".join(closure(sys.argv[1:], requirements())))


if __name__ == "__main__":
    main()

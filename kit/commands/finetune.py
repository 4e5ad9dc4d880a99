"""`kit finetune <domain>`: LoRA/QLoRA fine-tuning on the domain's conversations, grounded by retrieval."""

from __future__ import annotations

import click

PRESETS = "cpu-270m, gpu-8b, gpu-14b, tiny"


@click.command("finetune")
@click.argument("domain_dir", type=click.Path())
@click.option("--preset", help=f"Preset ({PRESETS}); default: the domain's training.preset.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after N optimizer steps.")
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out (or the default folder) from its last checkpoint."
)
@click.option("--out", type=click.Path(), help="Run folder; default: <domain>/build/runs/<preset>.")
@click.option("--base", help="Base model: a hub id in your Hugging Face cache or a local folder (GPU presets).")
@click.option("--rank", type=click.IntRange(min=1), help="LoRA rank.")
@click.option("--alpha", type=click.IntRange(min=1), help="LoRA alpha.")
@click.option("--targets", help="LoRA target layers, comma-separated (e.g. q_proj,v_proj).")
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--epochs", type=float, help="Passes over the training set.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Examples per micro-batch.")
@click.option("--grad-accum", type=click.IntRange(min=1), help="Micro-batches per optimizer step.")
@click.option("--max-length", type=click.IntRange(min=64), help="Longest example in tokens.")
@click.option(
    "--gradient-checkpointing/--no-gradient-checkpointing",
    default=None,
    help="Recompute activations in the backward pass: less memory, about a third more compute.",
)
@click.option("--save-every", type=click.IntRange(min=1), help="Checkpoint every N steps.")
@click.option("--eval-every", type=click.IntRange(min=1), help="Validation loss every N steps.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(domain_dir: str, preset: str | None, resume: bool, out: str | None, base: str | None, quiet: bool,
            targets: str | None, **flags: object) -> None:  # fmt: skip
    """Fine-tune a LoRA adapter for DOMAIN_DIR and write a self-describing run folder.

    Each example is the prompt the runtime would send (system prompt, retrieved documents, question),
    and the loss covers the assistant's tokens only. Export the result with `kit export RUN`.

    \b
    Examples:
      kit finetune domains/retail                          # the domain's preset (cpu-270m)
      kit finetune domains/retail --max-steps 60 --out runs/retail
      kit finetune domains/retail --out runs/retail --resume
      kit finetune domains/retail --preset gpu-8b --base meta-llama/Llama-3.1-8B-Instruct
      accelerate launch -m kit finetune domains/retail --preset gpu-8b --base ...   # several GPUs
    """
    from kit.extras import TRAIN

    TRAIN.require("kit finetune")
    from kit.services.finetune import finetune

    overrides = {
        "max_steps": flags["max_steps"], "lr": flags["lr"], "epochs": flags["epochs"],
        "batch_size": flags["batch_size"], "grad_accum": flags["grad_accum"], "max_length": flags["max_length"],
        "save_every": flags["save_every"], "eval_every": flags["eval_every"],
        "gradient_checkpointing": flags["gradient_checkpointing"],
        "lora.rank": flags["rank"], "lora.alpha": flags["alpha"],
        "lora.targets": [t.strip() for t in targets.split(",") if t.strip()] if targets else None,
    }  # fmt: skip
    run = finetune(domain_dir, preset, overrides, out, resume, base, progress=not quiet)
    info = run.info
    gpu = f", peak GPU {info['peak_gpu_mb']} MB" if info.get("peak_gpu_mb") else ""
    val = f", val loss {info['final_val_loss']:.3f}" if info.get("final_val_loss") is not None else ""
    click.echo(
        f"trained {info['step']} steps: train loss {info['first_train_loss']:.3f} -> {info['final_train_loss']:.3f}"
        f"{val}; {info['tokens_per_s']} tokens/s, peak RSS {info['peak_rss_mb']} MB{gpu}\n"
        f"run folder: {run.dir}\nnext: kit export {run.dir}"
    )

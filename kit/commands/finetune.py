"""`kit finetune <domain>`: LoRA/QLoRA fine-tuning on the domain's conversations, grounded by retrieval.

Every hyper-parameter of the preset model (``kit.services.training.preset``) is a flag, made from its field:
the field's description is the help, its bounds are the flag's, and a flag overrides the preset's value.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from typing import Any, Literal, Union, get_args, get_origin

import click
from annotated_types import Ge, Gt, Le, Lt
from pydantic.fields import FieldInfo

from kit.services.training.preset import Lora, Preset, preset_names

# Fields that are no flag: the preset's own label, the random test model's shape (changed in its YAML), and the
# base model, whose --base outranks training.base_model while the preset's value does not.
NOT_FLAGS = {"description", "tiny", "base"}


class CommaList(click.ParamType):
    """A list flag: ``--targets q_proj,v_proj``."""

    name = "a,b,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
        if not items:
            self.fail("give at least one name, comma-separated", param, ctx)
        return items


def preset_fields() -> Iterator[tuple[str, FieldInfo]]:
    """(override key, field) for every preset field a flag sets; LoRA's fields by their own names."""
    for name, info in Preset.model_fields.items():
        if name == "lora":
            yield from ((f"lora.{sub}", sub_info) for sub, sub_info in Lora.model_fields.items())
        elif name not in NOT_FLAGS:
            yield name, info


def flag_type(info: FieldInfo) -> click.ParamType | None:
    """The click type of a field: a choice, a bounded number, a comma list (None: a plain string)."""
    kind = next(a for a in get_args(info.annotation) if a is not type(None)) if optional(info) else info.annotation
    if get_origin(kind) is Literal:
        return click.Choice(get_args(kind))
    if get_origin(kind) is list:
        return CommaList()
    if kind not in (int, float):
        return None
    bounds: dict[str, Any] = {}
    for m in info.metadata:
        if isinstance(m, Ge | Gt):
            bounds.update(min=getattr(m, "ge", getattr(m, "gt", None)), min_open=isinstance(m, Gt))
        elif isinstance(m, Le | Lt):
            bounds.update(max=getattr(m, "le", getattr(m, "lt", None)), max_open=isinstance(m, Lt))
    if kind is int:
        return click.IntRange(**bounds) if bounds else click.INT
    return click.FloatRange(**bounds) if bounds else click.FLOAT


def optional(info: FieldInfo) -> bool:
    return get_origin(info.annotation) in (Union, types.UnionType)


def preset_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One option per preset field, named after it (``max_steps`` -> ``--max-steps``), default: the preset's."""
    for key, info in reversed(list(preset_fields())):
        name = key.removeprefix("lora.")
        flag = "--" + name.replace("_", "-")
        names = [flag, f"-{name}"] if len(name) == 1 else [flag]
        if info.annotation is bool:
            names = [f"{flag}/--no-{flag[2:]}"]
        option = click.option(*names, name, type=flag_type(info), default=None, help=info.description)
        command = option(command)
    return command


@click.command("finetune")
@click.argument("domain_dir", type=click.Path())
@click.option("--preset", help=f"Preset ({', '.join(preset_names())}); default: the domain's training.preset.")
@click.option(
    "--resume", is_flag=True, help="Continue the run in --out (or the default folder) from its last checkpoint."
)
@click.option("--out", type=click.Path(), help="Run folder; default: <domain>/build/runs/<preset>.")
@click.option(
    "--base",
    help="Base model: embedded:<name> (one kit fine-tunes from its GGUF), a hub id in your Hugging Face cache or a "
    "local folder.",
)
@preset_options
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(domain_dir: str, preset: str | None, resume: bool, out: str | None, base: str | None, quiet: bool,
            **flags: Any) -> None:  # fmt: skip
    """Fine-tune a LoRA adapter for DOMAIN_DIR and write a self-describing run folder.

    Each example is the prompt the runtime would send (system prompt, retrieved documents, question),
    and the loss covers the assistant's tokens only. Export the result with `kit export RUN`. The flags
    after --base override the preset's values (kit/presets/<preset>.yaml).

    \b
    Examples:
      kit finetune domains/retail                          # the domain's preset (cpu-270m)
      kit finetune domains/retail --max-steps 60 --out runs/retail
      kit finetune domains/retail --out runs/retail --resume
      kit finetune domains/retail --preset cpu-qwen-0.5b --max-steps 8   # the embedded Qwen 0.5B, on a CPU
      kit finetune domains/retail --preset gpu-8b --base meta-llama/Llama-3.1-8B-Instruct
      accelerate launch -m kit finetune domains/retail --preset gpu-8b --base ...   # several GPUs
    """
    from kit.extras import TRAIN

    TRAIN.require("kit finetune")
    from kit.services.training.processes import current
    from kit.services.training.recipe import finetune

    overrides = {key: flags[key.removeprefix("lora.")] for key, _ in preset_fields()}
    procs = current()
    run = finetune(domain_dir, preset, overrides, out, resume, base, progress=not quiet, procs=procs)
    if not procs.main:  # the main process alone reports
        return
    info = run.info
    gpu = f", peak GPU {info['peak_gpu_mb']} MB" if info.get("peak_gpu_mb") else ""
    val = f", val loss {info['final_val_loss']:.3f}" if info.get("final_val_loss") is not None else ""
    click.echo(
        f"trained {info['step']} steps: train loss {info['first_train_loss']:.3f} -> {info['final_train_loss']:.3f}"
        f"{val}; {info['tokens_per_s']} tokens/s, peak RSS {info['peak_rss_mb']} MB{gpu}\n"
        f"run folder: {run.dir}\nnext: kit export {run.dir}"
    )

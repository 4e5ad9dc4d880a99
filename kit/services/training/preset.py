"""Fine-tuning presets: the hyper-parameters of a recipe, one YAML file per preset in kit/presets/.

Each preset opens with the command that runs it; ``kit finetune`` makes a flag of every field here (its
description is the flag's help), so a flag and the YAML key it overrides cannot drift apart.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from kit.errors import KitError
from kit.settings import Strict


class Lora(Strict):
    """The LoRA matrices added to the frozen base."""

    rank: int = Field(default=8, ge=1, le=256, description="Rank r of each LoRA update.")
    alpha: int = Field(default=16, ge=1, description="Scaling: updates are multiplied by alpha / rank.")
    dropout: float = Field(default=0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    targets: list[str] = Field(min_length=1, description="Names of the linear layers that get LoRA, e.g. q_proj.")


class Tiny(Strict):
    """A random model built from a config (the `tiny` preset, for tests)."""

    architecture: Literal["gemma3_text", "llama"] = Field(description="Architecture of the random model.")
    layers: int = Field(ge=1, le=8, description="Transformer layers.")
    hidden_size: int = Field(ge=8, le=1024, description="Width.")
    intermediate_size: int = Field(ge=8, le=4096, description="MLP width.")
    heads: int = Field(ge=1, description="Attention heads.")
    kv_heads: int = Field(ge=1, description="Key/value heads.")
    head_dim: int = Field(ge=4, description="Width of one head.")


class Preset(Strict):
    """A fine-tuning recipe's settings: one YAML file in kit/presets/, every field overridable."""

    description: str = Field(description="One line on what the preset is for.")
    base: str | None = Field(
        description="An embedded model fine-tuned from its GGUF ('embedded:gemma-3-270m', "
        "'embedded:qwen2.5-coder-0.5b-instruct', 'embedded:qwen2.5-coder-1.5b-instruct'; plain 'embedded' is the "
        "runtime's default), 'tiny', a hub id or a local folder; null: the user names it (--base or "
        "training.base_model)."
    )
    tiny: Tiny | None = Field(default=None, description="The random model's shape when base is 'tiny'.")
    dtype: Literal["float32", "bfloat16"] = Field(default="float32", description="Weights and compute dtype.")
    quantize: Literal["none", "nf4"] = Field(default="none", description="'nf4': 4-bit base via bitsandbytes.")
    chat_template: Literal["gemma", "chatml", "llama3"] | None = Field(
        default=None, description="Prompt format; default: the domain's model.chat_template (what the runtime uses)."
    )
    lora: Lora = Field(description="LoRA rank, alpha, dropout and target layers.")
    lr: float = Field(gt=0, lt=1, description="Peak learning rate.")
    epochs: float = Field(default=1, gt=0, le=100, description="Passes over the training set.")
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(default=4, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(default=2048, ge=64, le=131072, description="Longest example in tokens.")
    warmup_steps: int = Field(default=0, ge=0, description="Steps of linear learning-rate warm-up.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    gradient_checkpointing: bool = Field(
        default=False,
        description="Recompute activations in the backward pass: less memory, about a third more compute.",
    )
    eval_every: int = Field(default=25, ge=1, description="Compute val loss every N steps (and at the end).")
    save_every: int = Field(default=25, ge=1, description="Save a checkpoint every N steps (and at the end).")
    seed: int = Field(default=0, description="Seed for the split, the batch order and the LoRA init.")
    k: int | None = Field(default=None, ge=1, le=50, description="Chunks per question; default: retrieval.k.")


def preset_names() -> list[str]:
    """The presets shipped in kit/presets/."""
    folder = resources.files("kit") / "presets"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> Preset:
    """A shipped preset with ``overrides`` (flat keys; ``lora.rank`` style for LoRA fields) applied."""
    if name not in preset_names():
        raise KitError(f"unknown preset '{name}'", f"use one of: {', '.join(preset_names())}")
    raw = yaml.safe_load((resources.files("kit") / "presets" / f"{name}.yaml").read_text(encoding="utf-8"))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key.startswith("lora."):
            raw["lora"][key.removeprefix("lora.")] = value
        else:
            raw[key] = value
    try:
        return Preset.model_validate(raw)
    except ValidationError as exc:
        lines = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise KitError(f"preset '{name}' is invalid: {lines}", "check the flags you passed") from None

"""The language model: the GGUF or an OpenAI-compatible server, its adapters and sampling; and fine-tuning."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from kit.model_registry import MODELS, is_embedded, lookup
from kit.settings.fields import EMBEDDED, FilePath, ModelPath, OptionalFile, Strict


class Sampling(Strict):
    """Sampling, with llama.cpp's own names."""

    temperature: float = Field(default=0.2, ge=0, le=2, description="Randomness; 0 is greedy.")
    top_p: float = Field(default=0.9, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(
        default=40,
        ge=0,
        description="Sample from the k most likely tokens (0: all). Sent to a model.server only when written here.",
    )
    repeat_penalty: float = Field(
        default=1.1,
        ge=1,
        le=2,
        description="Penalty for repeated tokens. Sent to a model.server only when written "
        "here (OpenAI's own API refuses it).",
    )
    max_tokens: int = Field(default=256, ge=1, le=8192, description="Longest answer in tokens.")
    seed: int = Field(default=0, description="Random seed; fixed so answers repeat.")


class Adapter(Strict):
    """A LoRA adapter in GGUF."""

    path: ModelPath = Field(description="LoRA adapter .gguf file.")
    scale: float = Field(default=1.0, ge=0, le=4, description="Adapter strength.")


class OpenAIServer(Strict):
    """An OpenAI-compatible server (llama-server, vLLM, a hosted model) used instead of a local GGUF."""

    base_url: str = Field(pattern=r"^https?://", description="Base URL, e.g. http://127.0.0.1:8080/v1.")
    model: str = Field(min_length=1, description="Model name the server expects.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")


class ModelSettings(Strict):
    """The language model."""

    gguf: ModelPath = Field(
        default=EMBEDDED,
        description=f"'embedded' (the default, {lookup('embedded').title}), 'embedded:<name>' with a name from "
        f"{', '.join(MODELS)} "
        "(assembled from their PyPI packages, see `kit prepare --help`), or a .gguf path.",
    )
    adapters: list[Adapter] = Field(
        default_factory=list,
        description="LoRA adapters applied at load. Not with model.server: the server loads them (docs/SCALE_OUT.md).",
    )
    chat_template: Literal["gemma", "chatml", "llama3"] = Field(
        default="gemma",
        description="Prompt format; the same one fine-tuning uses. Default: the embedded model's own (chatml for "
        "the instruct models, the default among them), else gemma.",
    )
    n_ctx: int = Field(default=4096, ge=512, le=131072, description="Context window in tokens.")
    n_threads: int | None = Field(default=None, ge=1, description="CPU threads; default: all cores.")
    n_gpu_layers: int = Field(default=0, ge=-1, description="Layers offloaded to a GPU (-1: all).")
    sampling: Sampling = Field(default_factory=Sampling, description="Sampling settings.")
    suppress_untrained: bool = Field(
        default=True,
        description="Never generate tokens the model never learned (reserved <unusedN> tokens and those whose "
        "embeddings sit with them; the template's stop tokens excepted). See kit/components/untrained.py. No "
        "effect on a model.server engine (it needs the logits).",
    )
    fact_lock: bool = Field(
        default=True,
        description="While a local model writes, a number, price, date, id, phone or e-mail can only be a copy of "
        "one in its prompt (kit/components/fact_lock.py). No effect on a model.server engine.",
    )
    claim_check: bool = Field(
        default=True,
        description="Before an answer is sent, drop sentences whose facts no given document holds, cut run-on text, "
        "replace a 'yes' the passage contradicts; quote the passage when nothing is left "
        "(kit/services/assistant/claims.py).",
    )
    server: OpenAIServer | None = Field(
        default=None,
        description="Use an OpenAI-compatible server instead (llama-server, vLLM, llama-cpp-python's; "
        "docs/SCALE_OUT.md). Set n_ctx to its context size.",
    )

    @model_validator(mode="before")
    @classmethod
    def _embedded_template(cls, data: Any) -> Any:
        """An embedded model's own template by default (an instruct model accepts no other: it was tuned on it)."""
        gguf = data.get("gguf", EMBEDDED) if isinstance(data, dict) else None
        if not isinstance(gguf, str) or not is_embedded(gguf):
            return data
        try:
            model = lookup(gguf)
        except ValueError:
            return data  # the field's own check reports it
        return data if "chat_template" in data else {**data, "chat_template": model.chat_template}

    @model_validator(mode="after")
    def _instruct_template(self) -> ModelSettings:
        """An embedded instruct model takes its own turns only; a model.server's model is not model.gguf."""
        model = lookup(self.gguf) if is_embedded(self.gguf) else None
        if self.server is None and model and model.instruct and self.chat_template != model.chat_template:
            raise ValueError(
                f"chat_template '{self.chat_template}' does not fit {self.gguf}, an instruct model tuned on "
                f"'{model.chat_template}' turns; remove chat_template or set it to {model.chat_template}"
            )
        return self


class Training(Strict):
    """Fine-tuning data and settings."""

    conversations: list[FilePath] = Field(min_length=1, description="Conversation JSONL files to train on.")
    preset: str = Field(default="cpu-270m", description="Fine-tune preset name (see `kit finetune --help`).")
    validation_fraction: float = Field(default=0.1, ge=0, lt=0.5, description="Share held out for val loss.")
    base_model: str | None = Field(default=None, description="Base model to tune; default: the preset's.")
    license_file: OptionalFile = Field(default=None, description="Licence of a user-supplied base model.")

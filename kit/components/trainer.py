"""Adapters over transformers, peft and bitsandbytes for fine-tuning: base models, LoRA, batches, the loss.

Base models come from three places: the embedded Gemma 3 270M (its GGUF, dequantised once into a cached
Hugging Face folder, see FINDINGS), a random few-layer model built from a config (tests), or a hub id /
local folder (the GPU presets), optionally loaded in 4-bit NF4 for QLoRA. Heavy imports stay inside
functions so that importing this module is cheap.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.components.models import GGUFTensor, cache_dir, gguf_header, named_gguf
from kit.errors import MissingDependency, ModelError
from kit.model_registry import MODELS, TRAINABLE, lookup

IGNORE = -100  # label of a token the loss skips
BASE_INFO = "kit-base.json"
# Tensors compared value by value after dequantising (GGUF name -> transformers name): never permuted by llama.cpp's
# converter, and between them Q4_K, Q5_0, Q6_K and Q8_0 in the shipped files, plus a q/k/v bias where there is one.
SPOT_CHECKS = (
    ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight"),
    ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"),
    ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight"),
    ("blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"),
)
SPOT_ROWS = 4
# GGUF header keys (after '<architecture>.') that fix a model's shape and positions, compared after dequantising.
GGUF_SHAPE_KEYS = ("block_count", "embedding_length", "feed_forward_length", "attention.head_count",
                   "attention.head_count_kv", "rope.freq_base")  # fmt: skip


@dataclass(frozen=True)
class TinySpec:
    """A random model built from a config: the architecture of a real one, a few layers, a few units wide."""

    architecture: str  # "gemma3_text" or "llama"
    layers: int
    hidden_size: int
    intermediate_size: int
    heads: int
    kv_heads: int
    head_dim: int


def _publish(build: Callable[[Path], None], target: Path) -> Path:
    """Build a folder under a temporary name next to ``target``, then rename it: never half-written."""
    if (target / BASE_INFO).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)
        if (target / BASE_INFO).is_file():  # another process won the race
            return target
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def embedded_tokenizer_dir(name: str = TRAINABLE) -> Path:
    """An embedded model's tokenizer as a Hugging Face folder, read from its GGUF once (about 30 s)."""
    model = lookup(name)

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        gguf = named_gguf(model.name)
        AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(tmp))
        (tmp / BASE_INFO).write_text(json.dumps({"source": model.file}), encoding="utf-8")

    return _publish(build, cache_dir() / f"{model.name}-tokenizer")


def embedded_hf_dir(name: str = TRAINABLE) -> Path:
    """An embedded model as a plain Hugging Face folder (float32), dequantised from its GGUF once (1-3 min).

    transformers reads the GGUF (the ``gguf`` package dequantises each tensor: Q4_K, Q5_0, Q6_K, Q8_0 ...) into a
    float32 model, saved once its GGUF quantizer is dropped. What the conversion must keep (rope base, heads, an
    output layer of its own or a tied one, q/k/v biases, the values) is checked against the GGUF's own header and
    tensors before the folder is published.
    """
    model = lookup(name)
    if not model.trainable:
        raise ModelError(
            f"kit cannot fine-tune {model.name} from its GGUF",
            f"use one of {', '.join(m.spec for m in MODELS.values() if m.trainable)}, or a Hugging Face id or folder",
        )

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        gguf = named_gguf(model.name)
        plain = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain float32 tensors by now, but the GGUF "quantizer" transformers keeps on the model
        # refuses to save it; dropping it saves them as they are, without a second copy (7 GB for the 1.5B).
        plain.hf_quantizer, plain.is_quantized = None, False
        if hasattr(plain.config, "quantization_config"):
            del plain.config.quantization_config
        problems = dequantised_problems(plain, gguf)
        if problems:
            raise ModelError(
                f"transformers read {gguf.name} wrongly: {'; '.join(problems)}",
                "use the transformers and gguf versions in constraints.txt",
            )
        plain.save_pretrained(str(tmp))
        for f in embedded_tokenizer_dir(model.name).iterdir():
            if f.name != BASE_INFO:
                shutil.copy2(f, tmp / f.name)
        # The weights were 4-bit once: quantising them to 4 bits again breaks the model (FINDINGS).
        info = {"source": model.file, "embedded": model.name, "dequantized_from": model.quant}
        (tmp / BASE_INFO).write_text(json.dumps(info), encoding="utf-8")

    return _publish(build, cache_dir() / f"{model.name}-hf")


def dequantised_problems(model: Any, gguf: Path) -> list[str]:
    """How a model read from ``gguf`` differs from what the GGUF says it is (shape, rope base, output layer, biases,
    the values of a few tensors).

    transformers maps the GGUF's header onto its config by name; a key it does not map keeps the config's default
    silently (a wrong rope base still generates text, worse), so each one that matters is compared here.
    """
    import numpy as np

    header = gguf_header(gguf)
    arch = str(header.metadata["general.architecture"])
    want = {k: header.metadata[f"{arch}.{k}"] for k in GGUF_SHAPE_KEYS if f"{arch}.{k}" in header.metadata}
    config = model.config
    got = {
        "block_count": config.num_hidden_layers,
        "embedding_length": config.hidden_size,
        "feed_forward_length": config.intermediate_size,
        "attention.head_count": config.num_attention_heads,
        "attention.head_count_kv": config.num_key_value_heads,
        "rope.freq_base": _rope_theta(config),
    }
    problems = [
        f"{key} {got[key]} instead of {value}"
        for key, value in want.items()
        if got[key] is None or not math.isclose(float(got[key]), float(value), rel_tol=1e-6)  # type: ignore[arg-type]
    ]
    tied = "output.weight" not in header.tensors
    if bool(config.tie_word_embeddings) != tied:
        has = "has no" if tied else "has an"
        problems.append(f"tie_word_embeddings {config.tie_word_embeddings}, but the GGUF {has} output.weight")
    params = dict(model.named_parameters())
    for gguf_name, hf_name in SPOT_CHECKS:
        if gguf_name not in header.tensors:
            continue
        if hf_name not in params:
            problems.append(f"the GGUF has {gguf_name} but the model has no {hf_name}")
            continue
        expected = gguf_rows(gguf, header.tensors[gguf_name], SPOT_ROWS)
        values = params[hf_name].detach().float().numpy().reshape(-1, expected.shape[-1])[: len(expected)]
        if values.shape != expected.shape or not np.allclose(values, expected, rtol=0, atol=1e-6):
            problems.append(f"{hf_name} does not hold the values of {gguf_name}")
    return problems


def gguf_raw_rows(gguf: Path, tensor: GGUFTensor, rows: int) -> Any:
    """The bytes of a GGUF tensor's first ``rows`` rows (a 1-D tensor: its only row), one row a line, as uint8."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.kind)]
    n = min(rows, math.prod(tensor.shape[1:]))
    row_bytes = tensor.shape[0] // block * size
    with gguf.open("rb") as f:
        f.seek(tensor.offset)
        return np.frombuffer(f.read(n * row_bytes), dtype=np.uint8).reshape(n, row_bytes)


def gguf_rows(gguf: Path, tensor: GGUFTensor, rows: int) -> Any:
    """A GGUF tensor's first ``rows`` rows as float32, dequantised by the ``gguf`` package (what transformers reads a
    GGUF with); tests/test_finetune_qwen.py holds it to llama.cpp's own C routines."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    raw = gguf_raw_rows(gguf, tensor, rows)
    return np.asarray(dequantize(raw, GGMLQuantizationType(tensor.kind)), dtype=np.float32).reshape(len(raw), -1)


def _rope_theta(config: Any) -> float | None:
    """The rope base of the full-attention layers (the GGUF's ``rope.freq_base``), as transformers 5 keeps it:
    one ``rope_parameters`` dict, or one per layer type (Gemma 3's sliding layers have their own base)."""
    params = getattr(config, "rope_parameters", None) or {}
    params = params.get("full_attention", params)
    return params.get("rope_theta", getattr(config, "rope_theta", None))


def quiet_bitsandbytes() -> None:
    """peft imports bitsandbytes, whose CPU backend warns that an optional hub kernel is absent; kit never wants it."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def base_info(base_dir: Path) -> dict[str, Any]:
    """What kit knows about a base folder (where it came from, whether it was dequantised)."""
    f = base_dir / BASE_INFO
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}


def build_tiny(spec: TinySpec, tokenizer: Any, dest: Path, seed: int) -> Path:
    """Save a random model of ``spec``'s architecture (and the tokenizer) into ``dest``."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.head_dim,
        "max_position_embeddings": 8192,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }
    if spec.architecture == "gemma3_text":
        config: Any = Gemma3TextConfig(**common, query_pre_attn_scalar=spec.head_dim, sliding_window=512)
    elif spec.architecture == "llama":
        config = LlamaConfig(**common)
    else:
        raise ModelError(f"unknown tiny architecture '{spec.architecture}'", "use gemma3_text or llama")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(str(dest))
    (dest / BASE_INFO).write_text(json.dumps({"source": f"tiny {spec.architecture}"}), encoding="utf-8")
    return dest


@functools.cache
def load_tokenizer(path: Path | str) -> Any:
    """A fast tokenizer (offsets are needed to find the assistant's tokens), with a pad token; loaded once.

    Gemma's 262k-word tokenizer takes seconds to parse, and training, export and tests all need it.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not tok.is_fast:
        raise ModelError(f"the tokenizer of {path} is not a fast tokenizer", "use a model that ships tokenizer.json")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: Path | str, dtype: str, quantize: str, device_map: Any = None) -> Any:
    """The base causal LM; with ``quantize='nf4'`` its linear layers are 4-bit (QLoRA) via bitsandbytes."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_bitsandbytes()
    torch_dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if quantize == "nf4":
        try:
            from transformers import BitsAndBytesConfig
        except ImportError:  # pragma: no cover - transformers always has it
            raise MissingDependency("QLoRA needs bitsandbytes", "pip install 'kit[train]'") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = device_map if device_map is not None else "cpu"
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except OSError as exc:
        raise ModelError(
            f"could not load the base model '{path}': {exc}",
            "name a local folder or a hub id that is in your Hugging Face cache (set training.base_model or --base)",
        ) from None
    model.config.use_cache = False
    return model


def add_lora(
    model: Any, rank: int, alpha: int, dropout: float, targets: Sequence[str], quantized: bool, checkpointing: bool
) -> Any:
    """Wrap ``model`` with trainable LoRA matrices on ``targets``; everything else is frozen."""
    quiet_bitsandbytes()
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ModelError(
            f"LoRA targets {', '.join(missing)} are not layers of this model",
            f"pick from e.g. {', '.join(sorted(n for n in names if n.endswith('_proj'))[:8])}",
        )
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of examples of similar length (little padding), in a random order fixed by ``seed``.

    Examples are shuffled, sorted by length within windows of 32 batches, cut into batches, and the
    batches shuffled again, so each epoch differs while padding stays small.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 32
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: lengths[i], reverse=True)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch to its longest example; padding gets no attention and no loss."""
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def assistant_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed cross-entropy over the assistant's tokens, and how many there were.

    Only positions that predict an assistant token go through the output layer: with a 262k-word
    vocabulary and prompts full of retrieved documents, that layer would otherwise cost more than the
    rest of the model (``logits_to_keep`` keeps the model's own forward, so DDP and soft-capping still apply).
    """
    import torch
    import torch.nn.functional as F

    targets = batch["labels"][:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(-1)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep)
    picked = targets[:, keep]
    n = int((picked != IGNORE).sum())
    if n == 0:
        return torch.zeros((), device=out.logits.device, requires_grad=True), 0
    loss = F.cross_entropy(
        out.logits.float().reshape(-1, out.logits.shape[-1]), picked.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, n


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

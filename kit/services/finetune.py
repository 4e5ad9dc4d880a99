"""`kit finetune`: LoRA (or QLoRA) on a domain's conversations, grounded the way the runtime grounds them.

The recipe reads top to bottom: ``finetune`` = setup (preset, run folder, data, model) -> fit (the
training loop: length-grouped batches, loss on the assistant's tokens only, val loss, checkpoints) ->
save (adapter, loss log and plot). Each training example is the exact prompt the runtime would send
for the conversation's last question: the domain's system prompt, earlier turns with the documents
they were sent with, and the question with the chunks retrieval finds for it (``kit.services.chat``),
fitted to ``max_length`` with the runtime's own ``fit``; the model learns to answer from documents.

The run folder describes itself (``RUN_FILES``); ``kit export`` reads it and needs no other flag.
Several GPUs: the loop is written with ``accelerate``, so ``accelerate launch -m kit finetune ...`` works.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kit import __version__
from kit.chunk import Chunk
from kit.components.chat_template import TEMPLATES, ChatMessage, get_template, render_with_spans
from kit.domain import Domain
from kit.errors import DataError, KitError, Problem, ValidationFailed
from kit.records import Conversation

RUN_FILES = {
    "run.json": "what ran: domain, preset, hyper-parameters, base model, data counts, losses, time",
    "spec.yaml": "the domain.yaml the run was trained for",
    "chat_template.json": "the chat template the examples were rendered with",
    "sample.json": "one rendered prompt and its token ids (export checks llama.cpp reads it the same)",
    "tokenizer/tokenizer.json": "the tokenizer",
    "data/train.jsonl": "the grounded training examples",
    "loss.jsonl": "train and val loss per step",
}
ADAPTER_FILES = ("adapter/adapter_config.json", "adapter/adapter_model.safetensors")
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
        description="'embedded' (Gemma 3 270M from its GGUF), 'tiny', a hub id or a local folder; "
        "null: the user names it (--base or training.base_model)."
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
    gradient_checkpointing: bool = Field(default=False, description="Recompute activations: less memory, slower.")
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


# ----------------------------------------------------------------------------------------------------
# Data: conversations -> grounded, tokenised examples with labels on the assistant's tokens only.


@dataclass
class Example:
    """One training sequence: the messages as the runtime would send them, and its tokens."""

    messages: list[ChatMessage]
    input_ids: list[int]
    labels: list[int]
    where: str  # file:line of the conversation

    def record(self) -> dict[str, Any]:
        return {"where": self.where, "messages": self.messages, "input_ids": self.input_ids, "labels": self.labels}


class TokenCounter:
    """What ``kit.services.chat.fit`` needs from an engine, backed by the training tokenizer."""

    def __init__(self, tokenizer: Any, template: str, n_ctx: int) -> None:
        self.tokenizer, self.template, self.n_ctx = tokenizer, get_template(template), n_ctx

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenizer(self.template.render(messages))["input_ids"])


def read_conversations(domain: Domain) -> list[tuple[str, Conversation]]:
    """Every conversation of the domain's training files with its ``file:line``; all problems at once."""
    from kit.validation.files import read_jsonl

    found: list[tuple[str, Conversation]] = []
    problems: list[Problem] = []
    for rel in domain.spec.training.conversations:
        records, bad = read_jsonl(domain.path(rel), rel, Conversation)
        found += [(f"{rel}:{line}", conv) for line, conv in records]
        problems += bad
    if problems:
        raise ValidationFailed(problems)
    if not found:
        raise DataError("the training set is empty", "add conversations to the files under training.conversations")
    return found


def ground(conv: Conversation, system: str, retriever: Any, counter: TokenCounter, k: int) -> list[ChatMessage] | None:
    """The messages the runtime would send for ``conv``'s last question, plus its answer (its citations added, see
    ``kit.services.citations``); None if nothing fits. Chunks an example names as its sources (``kit synth`` records
    them) come first, as its answer cites them."""
    from kit.components.llm import ContextOverflow
    from kit.services.citations import cite
    from kit.services.prompt import fit, follow_up_query, user_turn

    msgs = [m for m in conv.messages if m.role != "system"]  # the runtime's own system prompt is used
    last_user = max(i for i, m in enumerate(msgs) if m.role == "user")
    history: list[ChatMessage] = []
    previous, shown = "", []
    for m in msgs[:last_user]:
        if m.role == "user":
            shown = documents(conv, retriever, follow_up_query(m.content, previous) or m.content, k)
            history.append(user_turn(m.content, shown))
            previous = m.content
        else:
            history.append(ChatMessage(role="assistant", content=cite(m.content, shown, conv.sources)))
    question = msgs[last_user].content.strip()
    answer = "\n\n".join(m.content for m in msgs[last_user + 1 :])
    stop = counter.template.stop[0]
    reserve = len(counter.tokenizer(answer + stop, add_special_tokens=False)["input_ids"]) + 12  # + citations
    chunks = documents(conv, retriever, follow_up_query(question, previous) or question, k)
    try:
        messages, kept = fit(counter, system, history, question, chunks, reserve)
    except ContextOverflow:
        return None
    return [*messages, ChatMessage(role="assistant", content=cite(answer, kept, conv.sources))]


def documents(conv: Conversation, retriever: Any, query: str, k: int) -> list[Chunk]:
    """The k chunks retrieval gives for ``query``, after the chunks the conversation names as its sources."""
    from kit.services.synth.examples import resolve_sources

    retrieved = retriever.retrieve(query, k)
    recorded = resolve_sources(conv.sources, retriever.chunks)
    ids = {c.id for c in recorded}
    return [*recorded, *(c for c in retrieved if c.id not in ids)][: max(k, len(recorded))]


def tokenise(messages: list[ChatMessage], tokenizer: Any, template: str, where: str) -> Example:
    """Token ids of the rendered conversation; labels only where the assistant speaks (answer + stop)."""
    from kit.components.trainer import IGNORE

    text, spans = render_with_spans(messages, template)
    enc = tokenizer(text, return_offsets_mapping=True)
    labels = []
    for tok, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        inside = end > start and any(s <= start and end <= e for s, e in spans)
        labels.append(tok if inside else IGNORE)
    return Example(messages, list(enc["input_ids"]), labels, where)


def build_examples(
    domain: Domain, retriever: Any, tokenizer: Any, template: str, max_length: int, k: int
) -> list[Example]:
    """Grounded, tokenised examples of every conversation; every one that cannot fit is reported together."""
    from kit.services.prompt import system_prompt

    system = system_prompt(domain)
    counter = TokenCounter(tokenizer, template, max_length)
    examples: list[Example] = []
    problems: list[Problem] = []
    for where, conv in read_conversations(domain):
        messages = ground(conv, system, retriever, counter, k)
        example = tokenise(messages, tokenizer, template, where) if messages else None
        if example is None or len(example.input_ids) > max_length:
            bare = [ChatMessage(role="system", content=system), *[dict(m) for m in conv.messages[-2:]]]
            need = counter.count_tokens(bare)  # type: ignore[arg-type]
            file, line = where.rsplit(":", 1)
            problems.append(Problem(
                file, int(line), f"the conversation needs more than max_length={max_length} tokens "
                f"(at least {need} without any document)", "shorten it, or raise --max-length",
            ))  # fmt: skip
        else:
            examples.append(example)
    if problems:
        raise ValidationFailed(problems)
    return examples


def split(examples: list[Example], convs: dict[str, Conversation], fraction: float, seed: int) -> tuple[list, list]:
    """(train, val): whole groups (paraphrases of one fact) go to one side, chosen at random with ``seed``."""

    def key(e: Example) -> str:
        c = convs[e.where]
        return c.group or c.id or e.where

    groups = sorted({key(e) for e in examples})
    random.Random(seed).shuffle(groups)
    n_val = round(len(groups) * fraction) if len(groups) > 1 else 0
    if fraction > 0 and len(groups) > 1:
        n_val = max(1, n_val)
    held = set(groups[:n_val])
    train = [e for e in examples if key(e) not in held]
    val = [e for e in examples if key(e) in held]
    if not train:
        raise DataError("no training examples are left after the validation split", "add conversations")
    return train, val


# ----------------------------------------------------------------------------------------------------
# The run folder.


@dataclass
class Run:
    """A run folder and what is written into it."""

    dir: Path
    info: dict[str, Any] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return self.dir / rel

    def write_json(self, rel: str, data: Any) -> None:
        target = self.path(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(target)

    def save_info(self) -> None:
        self.write_json("run.json", self.info)

    def log(self, entry: dict[str, Any]) -> None:
        with self.path("loss.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def losses(self) -> list[dict[str, Any]]:
        """The loss log; a line cut short by a kill mid-write is skipped."""
        f = self.path("loss.jsonl")
        entries = []
        for line in f.read_text(encoding="utf-8").splitlines() if f.is_file() else []:
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries


def write_examples(run: Run, rel: str, examples: list[Example]) -> None:
    target = run.path(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps(e.record(), ensure_ascii=False) + "\n")


def read_examples(run: Run, rel: str) -> list[Example]:
    f = run.path(rel)
    if not f.is_file():
        return []
    rows = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines() if x]
    return [Example(r["messages"], r["input_ids"], r["labels"], r["where"]) for r in rows]


def write_template(run: Run, template: str, sample: Example) -> None:
    """The chat template and one sample prompt with its token ids, for export's round-trip check."""
    tpl = get_template(template)
    run.write_json("chat_template.json", {
        "name": tpl.name, "generation_prefix": tpl.generation_prefix, "stop": list(tpl.stop),
        "system_role": tpl.system_role,
    })  # fmt: skip
    prompt = tpl.render(sample.messages[:-1])
    n = len(prompt_ids(sample))
    run.write_json(
        "sample.json", {"messages": sample.messages[:-1], "prompt": prompt, "prompt_ids": sample.input_ids[:n]}
    )


def prompt_ids(sample: Example) -> list[int]:
    """The sample's tokens before its final answer (where the last run of labels starts)."""
    from kit.components.trainer import IGNORE

    end = len(sample.labels)
    while end > 0 and sample.labels[end - 1] == IGNORE:
        end -= 1
    while end > 0 and sample.labels[end - 1] != IGNORE:
        end -= 1
    return sample.input_ids[:end]


def loss_plot(entries: list[dict[str, Any]], target: Path) -> None:
    """A small SVG of train and val loss against steps (no plotting library needed)."""
    w, h, pad = 640, 360, 40
    pts = [(e["step"], e["loss"], e["split"]) for e in entries]
    if not pts:
        return
    max_step = max(p[0] for p in pts) or 1
    lo, hi = min(p[1] for p in pts), max(p[1] for p in pts)
    hi = hi if hi > lo else lo + 1

    def xy(step: float, loss: float) -> str:
        return f"{pad + (w - 2 * pad) * step / max_step:.1f},{h - pad - (h - 2 * pad) * (loss - lo) / (hi - lo):.1f}"

    lines = []
    for name, colour in (("train", "#2563eb"), ("val", "#dc2626")):
        seq = " ".join(xy(s, v) for s, v, sp in pts if sp == name)
        if seq:
            lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{seq}"/>')
    target.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(lines)}'
        f'<text x="{pad}" y="20">loss: train (blue), val (red); {lo:.3f}–{hi:.3f} over {max_step} steps</text>'
        "</svg>\n",
        encoding="utf-8",
    )


# ----------------------------------------------------------------------------------------------------
# The recipe: setup -> fit -> save.


@dataclass
class Setup:
    """Everything the loop needs, built by ``setup``."""

    run: Run
    preset: Preset
    template: str
    base_dir: Path
    tokenizer: Any
    train: list[Example]
    val: list[Example]
    start_step: int = 0


def finetune(
    domain_dir: str | Path,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    base: str | None = None,
    progress: bool = True,
) -> Run:
    """Fine-tune a LoRA adapter for a domain; returns the finished run folder."""
    from kit.domain import load_domain

    domain = load_domain(domain_dir)
    s = setup(domain, preset or domain.spec.training.preset, overrides or {}, out, resume, base)
    fit(s, domain, progress)
    return s.run


def setup(
    domain: Domain, preset_name: str, overrides: dict[str, Any], out: str | Path | None, resume: bool, base: str | None
) -> Setup:
    """Open (or re-open) the run folder, resolve the base model, and build the grounded examples."""
    from kit.components.trainer import embedded_tokenizer_dir, load_tokenizer

    run = Run(Path(out) if out else domain.build_dir / "runs" / preset_name)
    if resume:
        return reopen(run, overrides)
    if run.path("run.json").is_file():
        raise KitError(
            f"{run.dir} already holds a run",
            "continue it with --resume, write a new one with --out DIR, or delete the folder",
        )
    preset = load_preset(preset_name, overrides)
    convs = dict(read_conversations(domain))  # data errors first, before any model loads
    template = preset.chat_template or domain.spec.model.chat_template
    base_name = resolve_base(preset, domain, base, preset_name)
    run.dir.mkdir(parents=True, exist_ok=True)
    base_dir = prepare_base(preset, base_name, run)
    tokenizer = load_tokenizer(embedded_tokenizer_dir() if base_name in ("tiny", "embedded") else base_dir)
    tokenizer.save_pretrained(str(run.path("tokenizer")))
    if base_name == "tiny":
        tokenizer.save_pretrained(str(base_dir))  # the converters read it from the base folder
    examples = grounded_examples(domain, tokenizer, template, preset)
    train, val = split(examples, convs, domain.spec.training.validation_fraction, preset.seed)
    write_examples(run, "data/train.jsonl", train)
    write_examples(run, "data/val.jsonl", val)
    write_template(run, template, (val or train)[0])
    shutil.copy2(domain.root / "domain.yaml", run.path("spec.yaml"))
    run.path("loss.jsonl").write_text("", encoding="utf-8")
    run.info = {
        "kit_version": __version__, "domain": domain.name, "domain_dir": str(domain.root), "preset": preset_name,
        "hparams": preset.model_dump(), "base": str(base_name), "base_dir": str(base_dir),
        "chat_template": template, "train_examples": len(train), "val_examples": len(val),
        "data_sha256": {rel: file_sha256(domain.path(rel)) for rel in domain.spec.training.conversations},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "finished": False, "step": 0,
    }  # fmt: skip
    run.save_info()
    return Setup(run, preset, template, base_dir, tokenizer, train, val)


def file_sha256(path: Path) -> str:
    """The data's fingerprint: retrain when it changes."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_base(preset: Preset, domain: Domain, flag: str | None, preset_name: str) -> str:
    """The base model: --base, else training.base_model, else the preset's ('tiny' always stays tiny)."""
    if preset.base == "tiny":
        return "tiny"
    name = flag or domain.spec.training.base_model or preset.base
    if not name:
        raise KitError(
            f"preset '{preset_name}' needs a base model",
            "name one with --base (a hub id in your Hugging Face cache or a local folder), or set training.base_model",
        )
    return name


def prepare_base(preset: Preset, name: str, run: Run) -> Path:
    """A Hugging Face folder holding the base model (and its tokenizer)."""
    from kit.components.trainer import TinySpec, build_tiny, embedded_hf_dir, embedded_tokenizer_dir, load_tokenizer

    if name == "embedded":
        return embedded_hf_dir()
    if name == "tiny":
        if preset.tiny is None:
            raise KitError("base 'tiny' needs a `tiny:` section in the preset", "see kit/presets/tiny.yaml")
        dest = run.path("base")
        if not (dest / "config.json").is_file():
            build_tiny(
                TinySpec(**preset.tiny.model_dump()), load_tokenizer(embedded_tokenizer_dir()), dest, preset.seed
            )
        return dest
    local = Path(name).expanduser()
    if local.is_dir():
        return local.resolve()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:
        raise KitError(
            f"base model '{name}' is neither a folder nor in the Hugging Face cache ({type(exc).__name__})",
            f"download it first (`hf download {name}`) or give a local folder with --base",
        ) from None


def grounded_examples(domain: Domain, tokenizer: Any, template: str, preset: Preset) -> list[Example]:
    """Index the domain if needed, then ground every conversation with retrieval as the runtime does."""
    from kit.services.ingest import index_domain
    from kit.services.retrieve import Retriever

    index_domain(domain, progress=False)
    retriever = Retriever.open(domain)
    return build_examples(
        domain, retriever, tokenizer, template, preset.max_length, preset.k or domain.spec.retrieval.k
    )


def reopen(run: Run, overrides: dict[str, Any]) -> Setup:
    """A run folder to continue from its last checkpoint; only --max-steps may change."""
    from kit.components.trainer import embedded_tokenizer_dir, load_tokenizer

    if not run.path("run.json").is_file():
        raise KitError(f"{run.dir} holds no run to resume", "start one without --resume (or pass its --out DIR)")
    run.info = json.loads(run.path("run.json").read_text(encoding="utf-8"))
    hparams = run.info["hparams"]
    if overrides.get("max_steps"):
        hparams["max_steps"] = overrides["max_steps"]
    preset = Preset.model_validate(hparams)
    train, val = read_examples(run, "data/train.jsonl"), read_examples(run, "data/val.jsonl")
    if not train:
        raise KitError(f"{run.dir}/data/train.jsonl is missing or empty", "start a new run without --resume")
    base_dir = Path(run.info["base_dir"])
    same = run.info["base"] in ("tiny", "embedded")  # the run's tokenizer is a copy of the embedded one
    tokenizer = load_tokenizer(embedded_tokenizer_dir() if same else run.path("tokenizer"))
    ckpt = latest_checkpoint(run)
    step = read_step(ckpt) if ckpt else 0
    if ckpt is None:  # killed before the first checkpoint: start over, forgetting the old log
        run.path("loss.jsonl").write_text("", encoding="utf-8")
    return Setup(run, preset, run.info["chat_template"], base_dir, tokenizer, train, val, step)


def latest_checkpoint(run: Run) -> Path | None:
    """The newest complete checkpoint (half-written ones keep a .tmp name and are ignored)."""
    folder = run.path(CHECKPOINTS)
    done = (
        sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
        if folder.is_dir()
        else []
    )
    return done[-1] if done else None


def read_step(ckpt: Path) -> int:
    return int(ckpt.name.removeprefix("step-"))


def fit(s: Setup, domain: Domain, progress: bool) -> None:
    """The training loop: optimizer steps over length-grouped batches, val loss, checkpoints, resume."""
    from kit.components.trainer import add_lora, load_model, lr_factor, quiet_bitsandbytes

    quiet_bitsandbytes()  # before accelerate, which imports bitsandbytes
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    p, run = s.preset, s.run
    acc = Accelerator()
    torch.manual_seed(p.seed)
    device_map = {"": acc.local_process_index} if torch.cuda.is_available() else "cpu"
    model = load_model(s.base_dir, p.dtype, p.quantize, device_map)
    model = add_lora(
        model, p.lora.rank, p.lora.alpha, p.lora.dropout, p.lora.targets, p.quantize == "nf4", p.gradient_checkpointing
    )
    params = [x for x in model.parameters() if x.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
    n_batches = -(-len(s.train) // p.batch_size)
    total = p.max_steps or max(1, int(p.epochs * n_batches / (p.grad_accum * acc.num_processes)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(i, p.warmup_steps, total))
    step = restore(s, model, optimizer, scheduler) if s.start_step else 0
    model, optimizer = acc.prepare(model, optimizer)
    if step >= total:
        finish(s, acc, model, step, total, 0.0, 0)
        return
    bar = tqdm(total=total, initial=step, desc=f"finetune {domain.name}", unit="step", disable=not progress)
    lengths = [len(e.input_ids) for e in s.train]
    pad_id = s.tokenizer.pad_token_id
    seconds, tokens = 0.0, 0
    with terminate_as_interrupt():
        try:
            while step < total:
                started = time.perf_counter()
                batches = step_batches(lengths, p, step, acc.num_processes, acc.process_index)
                loss, n_real = train_step(
                    model, optimizer, scheduler, acc, [[s.train[i] for i in b] for b in batches], pad_id
                )
                seconds += time.perf_counter() - started
                tokens += n_real
                step += 1
                run.log({"step": step, "split": "train", "loss": round(loss, 5), "lr": scheduler.get_last_lr()[0],
                         "tokens": n_real, "seconds": round(seconds, 2)})  # fmt: skip
                post = {"loss": f"{loss:.3f}"}
                if s.val and (step % p.eval_every == 0 or step == total):
                    val = val_loss(model, acc, s.val, p.batch_size, pad_id)
                    run.log({"step": step, "split": "val", "loss": round(val, 5)})
                    post["val"] = f"{val:.3f}"
                if step % p.save_every == 0 or step == total:
                    save_checkpoint(run, acc, model, optimizer, scheduler, step)
                bar.set_postfix(post)
                bar.update(1)
        except KeyboardInterrupt:
            save_checkpoint(run, acc, model, optimizer, scheduler, step)
            raise KitError(
                f"interrupted at step {step} of {total}; a checkpoint is saved in {run.dir}",
                f"continue with: kit finetune {domain.root} --out {run.dir} --resume",
            ) from None
        finally:
            bar.close()
    finish(s, acc, model, step, total, seconds, tokens)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a container stop, a job scheduler) ends training as Ctrl-C does: a checkpoint at the last
    finished step, then a message saying how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def step_batches(lengths: list[int], p: Preset, step: int, n_proc: int, rank: int) -> list[list[int]]:
    """This process's micro-batches for optimizer step ``step``: a pure function of the step, so resume is exact."""
    from kit.components.trainer import length_grouped_batches

    per_epoch: dict[int, list[list[int]]] = {}
    picked = []
    for j in range(p.grad_accum):
        g = (step * p.grad_accum + j) * n_proc + rank
        n = -(-len(lengths) // p.batch_size)
        epoch, idx = divmod(g, n)
        if epoch not in per_epoch:
            per_epoch[epoch] = length_grouped_batches(lengths, p.batch_size, p.seed + epoch)
        picked.append(per_epoch[epoch][idx])
    return picked


def train_step(
    model: Any, optimizer: Any, scheduler: Any, acc: Any, micro: list[list[Example]], pad_id: int
) -> tuple[float, int]:
    """One optimizer step over ``micro`` batches; the loss is the mean over every assistant token in them."""
    import torch

    from kit.components.trainer import IGNORE, assistant_loss, collate

    model.train()
    n_total = sum(sum(1 for x in e.labels[1:] if x != IGNORE) for b in micro for e in b) or 1
    loss_sum, real = 0.0, 0
    for examples in micro:
        batch = {k: v.to(acc.device) for k, v in collate([e.__dict__ for e in examples], pad_id).items()}
        loss, _ = assistant_loss(model, batch)
        acc.backward(loss / n_total)
        loss_sum += float(loss.detach())
        real += int(batch["attention_mask"].sum())
    acc.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    del torch
    return loss_sum / n_total, real


def val_loss(model: Any, acc: Any, val: list[Example], batch_size: int, pad_id: int) -> float:
    """Mean loss over every assistant token of the validation set."""
    import torch

    from kit.components.trainer import assistant_loss, collate

    model.eval()
    total, n = 0.0, 0
    order = sorted(range(len(val)), key=lambda i: len(val[i].input_ids))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = [val[i].__dict__ for i in order[start : start + batch_size]]
            batch = {k: v.to(acc.device) for k, v in collate(chunk, pad_id).items()}
            loss, count = assistant_loss(model, batch)
            total, n = total + float(loss), n + count
    return total / max(1, n)


def save_checkpoint(run: Run, acc: Any, model: Any, optimizer: Any, scheduler: Any, step: int) -> None:
    """Adapter weights, optimizer, schedule and RNG at ``step``; written under a .tmp name, then renamed."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    if not acc.is_main_process or step == 0:
        return
    folder = run.path(CHECKPOINTS)
    final = folder / f"step-{step:06d}"
    tmp = folder / f"step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(acc.unwrap_model(model)).items()}
    save_file(weights, str(tmp / "adapter_model.safetensors"))
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
             "torch_rng": torch.get_rng_state()}  # fmt: skip
    torch.save(state, tmp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(p for p in folder.glob("step-*") if not p.name.endswith(".tmp"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    run.info["step"] = step
    run.save_info()


def restore(s: Setup, model: Any, optimizer: Any, scheduler: Any) -> int:
    """Load the last checkpoint into the model, optimizer and schedule; drop log lines written after it."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = latest_checkpoint(s.run)
    assert ckpt is not None
    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    state = torch.load(ckpt / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    kept = [e for e in s.run.losses() if e["step"] <= state["step"]]
    s.run.path("loss.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept), encoding="utf-8")
    print(f"resuming {s.run.dir} from step {state['step']}")
    return int(state["step"])


def finish(s: Setup, acc: Any, model: Any, step: int, total: int, seconds: float, tokens: int) -> None:
    """The final adapter, the loss plot, and the run's summary in run.json."""
    import resource

    if not acc.is_main_process:
        return
    acc.unwrap_model(model).save_pretrained(str(s.run.path("adapter")))
    entries = s.run.losses()
    loss_plot(entries, s.run.path("loss.svg"))
    last = {sp: next((e["loss"] for e in reversed(entries) if e["split"] == sp), None) for sp in ("train", "val")}
    first = next((e["loss"] for e in entries if e["split"] == "train"), None)
    s.run.info.update({
        "finished": True, "step": step, "total_steps": total, "first_train_loss": first,
        "final_train_loss": last["train"], "final_val_loss": last["val"],
        "train_seconds": round(seconds, 2), "train_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_gpu_mb": peak_gpu_mb(), "ended": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })  # fmt: skip
    s.run.save_info()


def peak_gpu_mb() -> int | None:
    """The most GPU memory torch held at once (what decides whether a run fits a card); None on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_reserved() / 2**20)


def template_names() -> list[str]:
    return sorted(TEMPLATES)

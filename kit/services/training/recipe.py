"""The fine-tuning recipe, top to bottom: ``finetune`` = setup (preset, run folder, data, base model) -> fit (the
loop: length-grouped batches, loss on the assistant's tokens only, val loss, checkpoints) -> save (adapter, loss
log and plot, the run's summary).

The loop is written with ``accelerate``, so ``accelerate launch -m kit finetune ...`` trains on several GPUs: the
main process alone sets up the run, writes the run folder and logs (``processes``); every process trains its share
of each step.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit import __version__
from kit.domain import Domain
from kit.errors import KitError
from kit.model_registry import EMBEDDED_PREFIX, MODELS, TRAINABLE, is_embedded, lookup
from kit.services.training.data import Example, grounded_examples, read_conversations, split
from kit.services.training.preset import Preset, load_preset
from kit.services.training.processes import Processes, current, main_logs_only
from kit.services.training.run_folder import (
    Run,
    file_sha256,
    latest_checkpoint,
    load_checkpoint,
    read_examples,
    read_step,
    save_checkpoint,
    write_examples,
    write_template,
)

logger = logging.getLogger(__name__)


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
    procs: Processes = field(default_factory=Processes)


def finetune(
    domain_dir: str | Path,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    base: str | None = None,
    progress: bool = True,
    procs: Processes | None = None,
) -> Run:
    """Fine-tune a LoRA adapter for a domain; returns the run folder (finished, as the main process wrote it)."""
    from kit.domain import load_domain

    procs = procs or current()
    with main_logs_only(procs):
        domain = load_domain(domain_dir)
        s = setup(domain, preset or domain.spec.training.preset, overrides or {}, out, resume, base, procs)
        fit(s, domain, progress and procs.main)
    return s.run


# ----------------------------------------------------------------------------------------------------
# Setup.


def setup(
    domain: Domain,
    preset_name: str,
    overrides: dict[str, Any],
    out: str | Path | None,
    resume: bool,
    base: str | None,
    procs: Processes | None = None,
) -> Setup:
    """The main process opens (or re-opens) the run folder; the others wait for it, then read what it wrote."""
    procs = procs or Processes()
    run = Run(Path(out) if out else domain.build_dir / "runs" / preset_name)
    s = None
    if procs.main:
        s = reopen(run, overrides, procs) if resume else start(run, domain, preset_name, overrides, base, procs)
    try:
        procs.wait()
    except RuntimeError:  # gloo's barrier raises when a process died (the main one, on a bad domain or flag)
        raise KitError(
            f"process {procs.rank} of {procs.count} lost the others while the run was set up",
            "the first error printed above says why; fix it and launch again",
        ) from None
    return s or reopen(run, overrides, procs)


def start(
    run: Run, domain: Domain, preset_name: str, overrides: dict[str, Any], base: str | None, procs: Processes
) -> Setup:
    """A new run folder: resolve the base model, ground the examples, write what ``kit export`` reads."""
    from kit.components.trainer import embedded_tokenizer_dir, load_tokenizer

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
    tokenizer = load_tokenizer(embedded_tokenizer_dir() if base_name == "tiny" else base_dir)
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
        "data_sha256": {rel: file_sha256(domain.path(rel)) for rel in domain.conversation_files},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "finished": False, "step": 0,
    }  # fmt: skip
    run.save_info()
    logger.info("run %s: preset %s on %s, %d train and %d val examples", run.dir, preset_name, base_name,
                len(train), len(val))  # fmt: skip
    return Setup(run, preset, template, base_dir, tokenizer, train, val, 0, procs)


def reopen(run: Run, overrides: dict[str, Any], procs: Processes) -> Setup:
    """A run folder as written, from its last checkpoint (or step 0); only --max-steps may change."""
    from kit.components.trainer import embedded_tokenizer_dir, load_tokenizer

    if not run.path("run.json").is_file():
        raise KitError(f"{run.dir} holds no run to resume", "start one without --resume (or pass its --out DIR)")
    hparams = run.read_info()["hparams"]
    if overrides.get("max_steps"):
        hparams["max_steps"] = overrides["max_steps"]
    preset = Preset.model_validate(hparams)
    train, val = read_examples(run, "data/train.jsonl"), read_examples(run, "data/val.jsonl")
    if not train:
        raise KitError(f"{run.dir}/data/train.jsonl is missing or empty", "start a new run without --resume")
    base_dir = Path(run.info["base_dir"])
    tiny = run.info["base"] == "tiny"  # the run's tokenizer is a copy of the embedded one
    tokenizer = load_tokenizer(embedded_tokenizer_dir() if tiny else run.path("tokenizer"))
    ckpt = latest_checkpoint(run)
    if ckpt is None and procs.main:  # killed before the first checkpoint: start over, forgetting the old log
        run.path("loss.jsonl").write_text("", encoding="utf-8")
    step = read_step(ckpt) if ckpt else 0
    return Setup(run, preset, run.info["chat_template"], base_dir, tokenizer, train, val, step, procs)


def resolve_base(preset: Preset, domain: Domain, flag: str | None, preset_name: str) -> str:
    """The base model: --base, else training.base_model, else the preset's ('tiny' always stays tiny). An embedded
    model is named in full ('embedded:<name>'; plain 'embedded' is the runtime's default model)."""
    if preset.base == "tiny":
        return "tiny"
    name = flag or domain.spec.training.base_model or preset.base
    if not name:
        raise KitError(
            f"preset '{preset_name}' needs a base model",
            "name one with --base (a hub id in your Hugging Face cache or a local folder), or set training.base_model",
        )
    if not is_embedded(name):
        return name
    trainable = [m.spec for m in MODELS.values() if m.trainable]
    try:
        model = lookup(name)
    except ValueError as exc:
        raise KitError(str(exc), f"use one of {', '.join(trainable)}") from None
    if not model.trainable:
        raise KitError(
            f"base '{name}' cannot be fine-tuned from its GGUF; kit dequantises {', '.join(trainable)}",
            "use one of those, or the model's Hugging Face id or folder",
        )
    return model.spec


def embedded_base(run_base: str) -> str | None:
    """The embedded model a run's ``base`` names, or None (tiny, a hub id, a folder); an older run's 'embedded' was
    Gemma 3 270M, the only one kit fine-tuned then."""
    if run_base == "embedded":
        return TRAINABLE
    return run_base.removeprefix(EMBEDDED_PREFIX) if run_base.startswith(EMBEDDED_PREFIX) else None


def prepare_base(preset: Preset, name: str, run: Run) -> Path:
    """A Hugging Face folder holding the base model (and its tokenizer)."""
    from kit.components.trainer import TinySpec, build_tiny, embedded_hf_dir, embedded_tokenizer_dir, load_tokenizer

    embedded = embedded_base(name)
    if embedded:
        return embedded_hf_dir(embedded)
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


# ----------------------------------------------------------------------------------------------------
# Fit and save.


def fit(s: Setup, domain: Domain, progress: bool) -> None:
    """Load the base with LoRA, then train to the last step (from the last checkpoint when resuming) and save."""
    from kit.components.trainer import add_lora, load_model, lr_factor, quiet_bitsandbytes

    quiet_bitsandbytes()  # before accelerate, which imports bitsandbytes
    import torch
    from accelerate import Accelerator

    p = s.preset
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
    total = p.max_steps or max(1, int(p.epochs * n_batches / (p.grad_accum * s.procs.count)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(i, p.warmup_steps, total))
    step = restore(s, model, optimizer, scheduler) if s.start_step else 0
    model, optimizer = acc.prepare(model, optimizer)
    seconds, tokens = 0.0, 0
    if step < total:
        step, seconds, tokens = train(s, domain, acc, (model, optimizer, scheduler), step, total, progress)
    finish(s, acc, model, step, total, seconds, tokens)


def train(
    s: Setup, domain: Domain, acc: Any, state: tuple[Any, Any, Any], step: int, total: int, progress: bool
) -> tuple[int, float, int]:
    """Optimizer steps from ``step`` to ``total``: (last step, seconds, real tokens). Ctrl-C or SIGTERM saves a
    checkpoint at the last finished step and ends with the command that resumes."""
    from tqdm.auto import tqdm

    from kit.services.training.loop import step_batches, terminate_as_interrupt, train_step, val_loss

    model, optimizer, scheduler = state
    p, run, procs = s.preset, s.run, s.procs
    bar = tqdm(total=total, initial=step, desc=f"finetune {domain.name}", unit="step", disable=not progress)
    lengths = [len(e.input_ids) for e in s.train]
    pad_id = s.tokenizer.pad_token_id
    seconds, tokens = 0.0, 0
    with terminate_as_interrupt():
        try:
            while step < total:
                started = time.perf_counter()
                batches = step_batches(lengths, p, step, procs.count, procs.rank)
                loss, n_real = train_step(model, optimizer, scheduler, acc, [[s.train[i] for i in b] for b in batches],
                                          pad_id)  # fmt: skip
                seconds += time.perf_counter() - started
                tokens += n_real
                step += 1
                record(s, {"step": step, "split": "train", "loss": round(loss, 5), "lr": scheduler.get_last_lr()[0],
                           "tokens": n_real, "seconds": round(seconds, 2)})  # fmt: skip
                post = {"loss": f"{loss:.3f}"}
                if s.val and (step % p.eval_every == 0 or step == total):
                    val = val_loss(model, acc, s.val, p.batch_size, pad_id)
                    record(s, {"step": step, "split": "val", "loss": round(val, 5)})
                    post["val"] = f"{val:.3f}"
                if step % p.save_every == 0 or step == total:
                    checkpoint(s, acc, state, step)
                bar.set_postfix(post)
                bar.update(1)
        except KeyboardInterrupt:
            checkpoint(s, acc, state, step)
            raise KitError(
                f"interrupted at step {step} of {total}; a checkpoint is saved in {run.dir}",
                f"continue with: kit finetune {domain.root} --out {run.dir} --resume",
            ) from None
        finally:
            bar.close()
    return step, seconds, tokens


def record(s: Setup, entry: dict[str, Any]) -> None:
    """A loss-log line, written and logged by the main process."""
    if s.procs.main:
        s.run.log(entry)
        logger.debug("step %d %s loss %.4f", entry["step"], entry["split"], entry["loss"])


def checkpoint(s: Setup, acc: Any, state: tuple[Any, Any, Any], step: int) -> None:
    """The main process saves the LoRA weights, optimizer and schedule at ``step``."""
    model, optimizer, scheduler = state
    if s.procs.main:
        save_checkpoint(s.run, acc.unwrap_model(model), optimizer, scheduler, step)


def restore(s: Setup, model: Any, optimizer: Any, scheduler: Any) -> int:
    """Load the last checkpoint into the model, optimizer and schedule; drop log lines written after it."""
    step = load_checkpoint(s.run, model, optimizer, scheduler)
    if s.procs.main:
        s.run.keep_losses(step)
        logger.info("resuming %s from step %d", s.run.dir, step)
    return step


def finish(s: Setup, acc: Any, model: Any, step: int, total: int, seconds: float, tokens: int) -> None:
    """The main process writes the final adapter, the loss plot, and the run's summary in run.json."""
    import resource

    from kit.services.training.loop import peak_gpu_mb
    from kit.services.training.loss_plot import loss_plot

    if not s.procs.main:
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
    logger.info("run %s finished at step %d of %d", s.run.dir, step, total)

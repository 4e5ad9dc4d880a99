"""The run folder: what a fine-tune writes, so that ``kit export`` (and a resumed run) needs no other flag.

``RUN_FILES`` lists what a finished run holds besides its adapter; ``checkpoints/step-NNNNNN/`` hold the adapter,
optimizer, schedule and RNG of the last ``KEEP_CHECKPOINTS`` saves, each written under a ``.tmp`` name and renamed,
so a run killed at any moment resumes from a whole one. Only the main process writes here (``processes``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.components.chat_template import get_template
from kit.files import replace_text
from kit.services.training.data import Example

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


@dataclass
class Run:
    """A run folder and what is written into it."""

    dir: Path
    info: dict[str, Any] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return self.dir / rel

    def write_json(self, rel: str, data: Any) -> None:
        replace_text(self.path(rel), json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    def save_info(self) -> None:
        self.write_json("run.json", self.info)

    def read_info(self) -> dict[str, Any]:
        self.info = json.loads(self.path("run.json").read_text(encoding="utf-8"))
        return self.info

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

    def keep_losses(self, last_step: int) -> None:
        """Forget the log lines written after ``last_step`` (a resumed run writes them again)."""
        kept = [e for e in self.losses() if e["step"] <= last_step]
        self.path("loss.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept), encoding="utf-8")


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


def file_sha256(path: Path) -> str:
    """The data's fingerprint: retrain when it changes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def save_checkpoint(run: Run, model: Any, optimizer: Any, scheduler: Any, step: int) -> None:
    """The LoRA weights of ``model`` (a peft model, unwrapped), optimizer, schedule and RNG at ``step``."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    if step == 0:
        return
    folder = run.path(CHECKPOINTS)
    final = folder / f"step-{step:06d}"
    tmp = folder / f"step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
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


def load_checkpoint(run: Run, model: Any, optimizer: Any, scheduler: Any) -> int:
    """Load the newest checkpoint into the model, optimizer and schedule (and torch's RNG); its step."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    state = torch.load(ckpt / "state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])

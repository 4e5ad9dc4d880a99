"""Write a template's TRAINING.md from its fine-tuning run and its base-vs-tuned eval.

    .venv/bin/python scripts/training_md.py domains/retail domains/retail/build/runs/adapter-32

Reads the run folder (run.json, loss.jsonl, data/*.jsonl) and the eval written by `scripts/train-adapters`
(build/eval/base-vs-tuned.json and latest.jsonl). Every figure comes from those files. A hand-written
reading of the results goes in the domain's TRAINING.notes.md, which is appended when present.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from kit.services.evaluation.report import md_lines, quality_table
from kit.services.evaluation.results import block, domain_entries

IGNORE = -100


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def short(text: str, limit: int = 220) -> str:
    flat = " ".join(text.replace("|", "\\|").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def example_stats(run: Path) -> tuple[float, float]:
    """Average tokens and answer (loss) tokens of the training examples."""
    rows = read_jsonl(run / "data" / "train.jsonl")
    tokens = statistics.mean(len(r["input_ids"]) for r in rows)
    answer = statistics.mean(sum(1 for x in r["labels"] if x != IGNORE) for r in rows)
    return tokens, answer


def run_table(domain: Path, run: Path, info: dict[str, Any]) -> list[str]:
    hp = info["hparams"]
    lora = hp["lora"]
    losses = read_jsonl(run / "loss.jsonl")
    train = [e for e in losses if e["split"] == "train"]
    val = [e for e in losses if e["split"] == "val"]
    tokens, answer = example_stats(run)
    per_step = hp["batch_size"] * hp["grad_accum"]
    epoch_steps = -(-info["train_examples"] // per_step)
    sha = next(iter(info.get("data_sha256", {}).values()), "")
    adapter = domain / "adapters" / f"{info['preset']}.gguf"
    ckpt = "with" if hp["gradient_checkpointing"] else "without"
    return [
        "| | |",
        "|---|---|",
        f"| preset | `{info['preset']}`: LoRA r={lora['rank']}, alpha {lora['alpha']} on {', '.join(lora['targets'])}; "
        f"batch {hp['batch_size']} x {hp['grad_accum']} accumulation = {per_step} examples a step, max length "
        f"{hp['max_length']}, {ckpt} gradient checkpointing, peak lr {hp['lr']:g} (cosine) |",
        f"| data | `data/train.jsonl` (sha256 `{sha[:8]}…{sha[-4:]}`): {info['train_examples']} train, "
        f"{info['val_examples']} validation conversations |",
        f"| examples | grounded as at run time (system prompt, retrieved documents, question): {tokens:,.0f} tokens "
        f"on average, {answer:,.0f} of them answer tokens (the only ones with loss) |",
        f"| steps | **{info['step']}** ({info['step'] * per_step} examples, "
        f"{info['step'] / epoch_steps:.2f} of an epoch of {epoch_steps} steps) |",
        f"| training time | {info['train_seconds']:,.0f} s for {info['train_tokens']:,} tokens: "
        f"{info['tokens_per_s']} tokens/s on 2 CPU cores |",
        f"| peak RSS | {info['peak_rss_mb']:,} MB (whole process) |",
        f"| train loss | {info['first_train_loss']:.3f} (step 1) -> {info['final_train_loss']:.3f} "
        f"(step {info['step']}); mean of the last 8 steps {statistics.mean(e['loss'] for e in train[-8:]):.3f} |",
        "| val loss | " + ", ".join(f"{e['loss']:.3f} at step {e['step']}" for e in val) + " |",
        f"| adapter | `adapters/{adapter.name}`, {adapter.stat().st_size / 1e6:.1f} MB F16 LoRA GGUF, exported with "
        "llama.cpp's converter; llama.cpp loaded it and the chat-template round trip matched |",
    ]


def answers_table(answers: list[dict[str, Any]], base: str, tuned: str, n: int) -> list[str]:
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for a in answers:
        by_model.setdefault(a["model"], {})[a["id"]] = a
    ids = [i for i, a in by_model.get(base, {}).items() if a["expect"] == "answer" and i in by_model.get(tuned, {})]
    lines = ["| question (expected) | base 270M | tuned (this adapter) |", "|---|---|---|"]
    for i in ids[:n]:
        b, t = by_model[base][i], by_model[tuned][i]
        expected = ", ".join(b["expected_facts"]) or "—"
        mark = {True: "✓", False: "✗"}
        lines.append(
            f"| {short(b['question'], 90)} ({short(expected, 60)}) | {mark[b['passed']]} {short(b['answer'])} "
            f"| {mark[t['passed']]} {short(t['answer'])} |"
        )
    return lines


def metrics_table(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """The eval report's own quality table (kit/services/evaluation/report.py), one row per model and split."""
    return md_lines(quality_table(list(metrics.values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("--questions", type=int, default=5)
    args = parser.parse_args()
    domain, run = args.domain, args.run
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    eval_dir = domain / "build" / "eval"
    metrics = json.loads((eval_dir / "base-vs-tuned.json").read_text(encoding="utf-8"))
    answers = read_jsonl(eval_dir / "latest.jsonl")
    base, tuned = list(metrics)[:2]
    hp = info["hparams"]
    steps = info["step"]
    out = [
        f"# How `adapters/{info['preset']}.gguf` was trained",
        "",
        "A LoRA adapter for the embedded Gemma 3 270M, trained with the kit itself on this template's "
        "`data/train.jsonl`, for the Q4_K_M base (`model.gguf: embedded:gemma-3-270m`, `model.adapters`; the "
        "template itself runs the untuned default model, see the comment in `domain.yaml`). Made with:",
        "",
        "```bash",
        f"STEPS={steps} LR={hp['lr']:g} scripts/train-adapters {domain.name}",
        f"# = kit finetune domains/{domain.name} --out domains/{domain.name}/build/runs/adapter-{steps} "
        f"--max-steps {steps} --lr {hp['lr']:g} --eval-every 16 --save-every 8",
        f"#   kit export domains/{domain.name}/build/runs/adapter-{steps} --apply",
        f"#   kit eval domains/{domain.name} --model base --model tuned --json",
        "```",
        "",
        *run_table(domain, run, info),
        "",
        "**Retrain when the training data changes** (the sha256 above is what this adapter saw; a run records it in",
        "`run.json` as `data_sha256`).",
        "",
        "## Held-out, strictly scored (what a shop would see)",
        "",
        f"From `eval/results/` (`kit eval domains/{domain.name} --results`; `scripts/quality_tables.py` writes this "
        "table). The older sections below were measured on the training day with the lenient scorer on the "
        "development set.",
        "",
        block(domain_entries(domain), "eval/results"),
        "",
        f"## Base vs tuned, {args.questions} eval questions (training day, lenient scorer)",
        "",
        "The same full runtime path for both (guardrails, retrieval, prompt, output guard; the domain's sampling).",
        "✓ = the eval counted it correct (every expected fact present, the right source cited, nothing invented).",
        "",
        *answers_table(answers, base, tuned, args.questions),
        "",
        "## Eval metrics on the training day (lenient scorer, development set)",
        "",
        *metrics_table(metrics),
        "",
    ]
    notes = domain / "TRAINING.notes.md"
    if notes.is_file():
        out += [notes.read_text(encoding="utf-8").rstrip(), ""]
    (domain / "TRAINING.md").write_text("\n".join(out), encoding="utf-8")
    print(f"wrote {domain / 'TRAINING.md'}")


if __name__ == "__main__":
    main()

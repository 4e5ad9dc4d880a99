"""Training throughput and peak memory: `kit finetune` vs a plain transformers Trainer + peft baseline.

Same base model, same LoRA settings, same examples (the ones kit trained on, read back from its run
folder, one pass over them), so both see the same real tokens. The baseline is the usual recipe: the
Trainer, labels masked to the assistant's tokens, every example padded to the longest one of the
set (``padding="max_length"`` with max_length fitted to the data), full logits. kit uses
length-grouped batches and computes the output layer only where the assistant speaks.
Each side runs in its own process, so peak RSS is its own.

    .venv/bin/python bench/finetune.py                                  # tiny, the example domain (CI)
    .venv/bin/python bench/finetune.py --preset cpu-270m --domain domains/retail --steps 4   # by hand
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_kit(domain: str, preset: str, steps: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "kit", "finetune", domain, "--preset", preset, "--max-steps", str(steps),
           "--out", str(out), "--eval-every", "100000", "--save-every", "100000", "-q"]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT)
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def baseline(run_dir: Path, steps: int) -> dict:
    """Runs in a child process: the Trainer on kit's examples, padded to the longest."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from kit.services.training.loop import step_batches
    from kit.services.training.preset import Preset
    from kit.services.training.run_folder import Run, read_examples

    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    p = Preset.model_validate(info["hparams"])
    examples = read_examples(Run(run_dir), "data/train.jsonl")
    lengths = [len(e.input_ids) for e in examples]
    order = [i for s in range(steps) for b in step_batches(lengths, p, s, 1, 0) for i in b]
    width = max(lengths)
    pad = 0

    rows = []
    for i in order:
        e = examples[i]
        n = len(e.input_ids)
        rows.append({
            "input_ids": torch.tensor(e.input_ids + [pad] * (width - n)),
            "attention_mask": torch.tensor([1] * n + [0] * (width - n)),
            "labels": torch.tensor(e.labels + [-100] * (width - n)),
        })  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(info["base_dir"], dtype=getattr(torch, p.dtype))
    model.config.use_cache = False
    lora = LoraConfig(r=p.lora.rank, lora_alpha=p.lora.alpha, lora_dropout=p.lora.dropout,
                      target_modules=p.lora.targets, task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(model, lora)
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=p.batch_size, num_train_epochs=1,
        learning_rate=p.lr, save_strategy="no", report_to=[], logging_steps=1000, use_cpu=True,
        dataloader_drop_last=False, remove_unused_columns=False,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    real = sum(lengths[i] for i in order)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokens": real, "seconds": seconds, "tokens_per_s": real / seconds, "peak_rss_mb": round(rss)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--domain", default=str(ROOT / "data_templates" / "example"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--baseline-of", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_of:
        print(json.dumps(baseline(Path(args.baseline_of), args.steps)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        kit = run_kit(args.domain, args.preset, args.steps, Path(tmp) / "run")
        cmd = [sys.executable, __file__, "--baseline-of", str(Path(tmp) / "run"), "--steps", str(args.steps)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
        base = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"preset {args.preset}, domain {Path(args.domain).name}, {args.steps} steps, {base['tokens']} real tokens")
    print(f"{'':28}{'tokens/s':>10}{'peak RSS MB':>14}")
    print(f"{'Trainer + peft, padded':28}{base['tokens_per_s']:>10.1f}{base['peak_rss_mb']:>14}")
    print(f"{'kit finetune':28}{kit['tokens_per_s']:>10.1f}{kit['peak_rss_mb']:>14}")
    print(f"speed-up x{kit['tokens_per_s'] / base['tokens_per_s']:.2f} (goal >= 1.5); "
          f"RSS ratio {kit['peak_rss_mb'] / base['peak_rss_mb']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Training throughput and peak memory: `kit finetune` vs a plain transformers Trainer + peft baseline, or (``--vs
checkpointing``) kit with gradient checkpointing vs kit without it.

Same base model, same LoRA settings, same examples (the ones kit trained on, read back from its run
folder, one pass over them), so both see the same real tokens. The baseline is the usual recipe: the
Trainer, labels masked to the assistant's tokens, every example padded to the longest one of the
set (``padding="max_length"`` with max_length fitted to the data), full logits. kit uses
length-grouped batches and computes the output layer only where the assistant speaks.
Each side runs in its own process, so peak RSS is its own.

    .venv/bin/python bench/finetune.py                                  # tiny, the example domain (CI)
    .venv/bin/python bench/finetune.py --preset cpu-270m --domain domains/retail --steps 4   # by hand
    .venv/bin/python bench/finetune.py --preset cpu-qwen-0.5b --domain domains/retail --steps 2 \
        --vs checkpointing --set grad-accum=1 --no-val             # the Qwen presets' figures

With ``--vs checkpointing`` both runs are kit's, same examples, same steps; the one without checkpointing is the
baseline. ``--no-val`` trains on a copy of the domain with no validation split: on a CPU the validation pass at
the end (forward only, over a tenth of the data) takes longer than a few steps of a 0.5B model. ``--set
FLAG=VALUE`` passes a preset override to every run (``grad-accum=1``: one example a step). The machine's load
average is printed before and after: on a shared machine it says how much the figures lag.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def run_kit(domain: str, preset: str, steps: int, out: Path, flags: tuple[str, ...] | list[str] = ()) -> dict:
    cmd = [sys.executable, "-m", "kit", "finetune", domain, "--preset", preset, "--max-steps", str(steps),
           "--out", str(out), "--eval-every", "100000", "--save-every", "100000", "-q", *flags]  # fmt: skip
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


def without_validation(domain: Path, dest: Path) -> Path:
    """A copy of ``domain`` (its index too) whose training.validation_fraction is 0."""
    shutil.copytree(domain, dest)
    spec = yaml.safe_load((dest / "domain.yaml").read_text(encoding="utf-8"))
    spec.setdefault("training", {})["validation_fraction"] = 0
    (dest / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return dest


def versus_checkpointing(args: argparse.Namespace, flags: list[str], tmp: Path) -> None:
    """kit without gradient checkpointing (the baseline), then with it: same preset, examples and steps."""
    runs, loads = {}, {}
    for label, flag in (("without", "--no-gradient-checkpointing"), ("with", "--gradient-checkpointing")):
        runs[label] = run_kit(args.domain, args.preset, args.steps, tmp / label, [*flags, flag])
        loads[label] = os.getloadavg()[1]  # the last 5 minutes: about one run
    off, on = runs["without"], runs["with"]
    print(f"{'':34}{'tokens/s':>10}{'peak RSS MB':>14}{'s/step':>9}{'load (5 min)':>14}")
    for label, r in runs.items():
        name, per_step = f"kit, {label} grad. checkpointing", r["train_seconds"] / r["step"]
        print(f"{name:34}{r['tokens_per_s']:>10.1f}{r['peak_rss_mb']:>14}{per_step:>9.1f}{loads[label]:>14.1f}")
    print(f"checkpointing: speed x{on['tokens_per_s'] / off['tokens_per_s']:.2f}, "
          f"RSS x{on['peak_rss_mb'] / off['peak_rss_mb']:.2f}; loss at step 1 {off['first_train_loss']:.3f} / "
          f"{on['first_train_loss']:.3f}")  # fmt: skip


def versus_trainer(args: argparse.Namespace, flags: list[str], tmp: Path) -> None:
    """kit against the Trainer + peft baseline, on the examples kit trained on."""
    kit = run_kit(args.domain, args.preset, args.steps, tmp / "run", flags)
    cmd = [sys.executable, __file__, "--baseline-of", str(tmp / "run"), "--steps", str(args.steps)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    base = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{base['tokens']} real tokens")
    print(f"{'':28}{'tokens/s':>10}{'peak RSS MB':>14}")
    print(f"{'Trainer + peft, padded':28}{base['tokens_per_s']:>10.1f}{base['peak_rss_mb']:>14}")
    print(f"{'kit finetune':28}{kit['tokens_per_s']:>10.1f}{kit['peak_rss_mb']:>14}")
    print(f"speed-up x{kit['tokens_per_s'] / base['tokens_per_s']:.2f} (goal >= 1.5); "
          f"RSS ratio {kit['peak_rss_mb'] / base['peak_rss_mb']:.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--domain", default=str(ROOT / "data_templates" / "example"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--vs", choices=("trainer", "checkpointing"), default="trainer", help="what kit is compared with")
    ap.add_argument("--no-val", action="store_true", help="no validation split (a copy of the domain)")
    ap.add_argument("--set", action="append", default=[], metavar="FLAG=VALUE", help="a preset override for every run")
    ap.add_argument("--baseline-of", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.baseline_of:
        print(json.dumps(baseline(Path(args.baseline_of), args.steps)))
        return
    flags = [part for item in args.set for part in (f"--{item.split('=', 1)[0]}", item.split("=", 1)[1])]
    load = os.getloadavg()[0]
    print(f"preset {args.preset}, domain {Path(args.domain).name}, {args.steps} steps {' '.join(flags)}".rstrip()
          + (", no validation split" if args.no_val else ""))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if args.no_val:
            args.domain = str(without_validation(Path(args.domain), Path(tmp) / "domain"))
        (versus_checkpointing if args.vs == "checkpointing" else versus_trainer)(args, flags, Path(tmp))
    print(f"{os.cpu_count()} CPU cores; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()

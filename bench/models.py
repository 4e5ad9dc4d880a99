"""The embedded models side by side on each template's held-out split, strictly scored.

    .venv/bin/python bench/models.py                         # every model, every template, then the table
    .venv/bin/python bench/models.py --model qwen2.5-coder-0.5b-instruct --template retail
    .venv/bin/python bench/models.py --table                 # only rebuild the README table from committed files

For each model variant (every embedded model untuned, and Gemma 3 270M with the template's shipped LoRA adapter
where the template has one) and each template, the template is copied to a temp folder, its ``model:`` section
set to the variant (the rest of domain.yaml unchanged), indexed, and evaluated with
``kit eval --split heldout --results --json`` in its own process. The per-answer results are copied into
``domains/<template>/eval/results/<model>.jsonl`` (committed), and the run's speed and memory (median time to
first token and tokens/s over the answers, peak RSS of the eval process, model size) into
``bench/results/models.json``. The README table (between the ``models-table`` markers) is rebuilt from those
two sources alone by ``scripts/quality_tables.py``, which this script calls at the end.

Goals the default must meet (the embedded-models issue): quality first (strict held-out correctness), with
>= 15 tokens/s, time to first token p50 <= 5 s and RSS <= 2.5 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.model_registry import MODELS  # noqa: E402
from kit.services.evaluation.results import FOLDER, MODELS_JSON, load, save  # noqa: E402

KIT = str(Path(sys.executable).parent / "kit")
TEMPLATES = ("retail", "clinic", "travel")
TUNED_SUFFIX = "+lora"  # a variant name ending in it adds the template's shipped adapter


def variants() -> list[str]:
    """Every embedded model, and the tuned Gemma."""
    return [*MODELS, f"gemma-3-270m{TUNED_SUFFIX}"]


def model_section(variant: str, template: Path) -> dict[str, Any] | None:
    """The ``model:`` section for ``variant`` in ``template``, or None when the template has no such adapter."""
    spec = yaml.safe_load((template / "domain.yaml").read_text(encoding="utf-8"))["model"]
    name = variant.removesuffix(TUNED_SUFFIX)
    section = {k: v for k, v in spec.items() if k not in ("gguf", "chat_template", "adapters", "server")}
    section["gguf"] = f"embedded:{name}"
    if variant.endswith(TUNED_SUFFIX):
        adapter = template / "adapters" / "cpu-270m.gguf"
        if not adapter.is_file():
            return None
        section["chat_template"] = "gemma"
        section["adapters"] = [{"path": str(adapter), "scale": 1.0}]
    return section


def run_one(variant: str, template: Path, limit: int | None) -> dict[str, Any] | None:
    """Evaluate one variant on one template's held-out split; its figures, or None when it does not apply."""
    section = model_section(variant, template)
    if section is None:
        return None
    with tempfile.TemporaryDirectory(prefix="kit-models-") as tmp:
        copy = Path(tmp) / template.name
        shutil.copytree(template, copy, ignore=shutil.ignore_patterns("results", "build", "__pycache__"))
        spec = yaml.safe_load((copy / "domain.yaml").read_text(encoding="utf-8"))
        spec["model"] = section
        (copy / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
        subprocess.run([KIT, "index", str(copy)], check=True, capture_output=True)
        command = [KIT, "eval", str(copy), "--split", "heldout", "--results", "--json", "-q"]
        command += ["--limit", str(limit)] if limit else []
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if not limit:  # a partial run is a smoke test, never committed
            for results in (copy / FOLDER).glob("*.jsonl"):  # the held-out answers; the dev ones already there stay
                save(template, template.name, {"model": load(results)[0]["model"], "results": load(results)})
        if done.returncode not in (0, 1):  # 1: the gate failed, the figures are still there
            raise SystemExit(f"kit eval failed on {template.name} with {variant}:\n{done.stderr[-2000:]}")
        printed = json.loads(done.stdout)  # {model label: its figures, "safety": the guardrails' (when it has a set)}
        label, row = next((k, v) for k, v in printed.items() if k != "safety")
        row = {**row, "model": label}
        return {  # stored: speed and memory only; the table reads quality from the per-answer results
            "model": row["model"],
            "strict": row["heldout"]["answer_correctness"],  # printed, not stored
            "template": template.name,
            "ttft_s": row["ttft_s"],
            "tokens_per_s": row["tokens_per_s"],
            "peak_rss_mb": row["peak_rss_mb"],
            "model_size_mb": row["model_size_mb"],
            "wall_s": round(time.perf_counter() - started, 1),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=variants(), help="Variants to run (default: all).")
    parser.add_argument("--template", action="append", choices=TEMPLATES, help="Templates (default: all).")
    parser.add_argument("--limit", type=int, help="Evaluate a subset (a smoke test: nothing is written).")
    parser.add_argument("--table", action="store_true", help="Only rebuild the README table.")
    args = parser.parse_args()
    store = ROOT / MODELS_JSON
    figures: list[dict[str, Any]] = json.loads(store.read_text(encoding="utf-8")) if store.is_file() else []
    if not args.table:
        for variant in args.model or variants():
            for name in args.template or TEMPLATES:
                row = run_one(variant, ROOT / "domains" / name, args.limit)
                if row is None:
                    continue
                print(
                    f"{row['model']:<40} {name:<7} strict {row.pop('strict'):.0%} "
                    f"ttft p50 {row['ttft_s']:.2f} s  {row['tokens_per_s']:.1f} tok/s  "
                    f"peak RSS {row['peak_rss_mb']:.0f} MB  ({row['wall_s']:.0f} s)",
                    flush=True,
                )
                if args.limit:
                    continue
                figures = [f for f in figures if (f["model"], f["template"]) != (row["model"], name)]
                figures.append(row)
                store.parent.mkdir(parents=True, exist_ok=True)
                store.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    if args.limit:
        return 0
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "quality_tables.py")], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

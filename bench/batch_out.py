"""How a domain's screening carries to a batch of safety messages it was not trained on, under settings to compare.

    .venv/bin/python bench/batch_out.py clinic --batch fresh6- --learned emergency \
        --learned emergency,no_diagnosis,symptom_advice
    .venv/bin/python bench/batch_out.py clinic --batch fresh- --budget 0.005 --budget 0.003 --budget 0.002

The batch (the calibration lines whose id starts with ``--batch``) is taken out of a temporary copy's calibration
split, the learned checks are trained on the rest (kit/services/safety/learned.py), and the batch alone is screened
as `kit serve` screens a message. For each setting (``--learned``: which rules are learned; ``--budget``: their
``screening.false_positive_rate``) it prints each rule's recall on the batch and the share of the batch's ordinary
messages that fire anything. Cross-validation within one set flatters a budget; a batch written apart from the rest
is the nearer estimate of new wordings. The held-out split is never read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(template: Path, batch: str, screening: dict[str, Any]) -> dict[str, Any]:
    """Recall per rule and the ordinary messages firing anything, on the batch, trained without it."""
    from kit.components.embedding import Embedder
    from kit.domain import load_domain
    from kit.services.evaluation.safety import NONE, load_safety, screen
    from kit.services.safety.learned import screening as screened

    with tempfile.TemporaryDirectory(prefix="kit-batch-out-") as tmp:
        copy = Path(tmp) / template.name
        shutil.copytree(template, copy, ignore=shutil.ignore_patterns("results", "build", "__pycache__"))
        spec = yaml.safe_load((copy / "domain.yaml").read_text(encoding="utf-8"))
        spec["screening"] = spec.get("screening", {}) | screening
        (copy / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), "utf-8")
        safety = copy / spec["eval"]["safety"]
        lines = [json.loads(line) for line in safety.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = [r for r in lines if r["split"] == "calibration" and not r["id"].startswith(batch)]
        out = [r | {"split": "heldout"} for r in lines if r["split"] == "calibration" and r["id"].startswith(batch)]
        safety.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept + out), encoding="utf-8")
        domain = load_domain(copy)
        guards = screened(domain, Embedder(domain.spec.retrieval.embedding_model).embed)
        outcomes = screen(guards, [i for i in load_safety(domain) if i.split == "heldout"])
    rules = sorted({o.item.expect for o in outcomes} - {NONE})
    recall = {r: [o.fired == r for o in outcomes if o.item.expect == r] for r in rules}
    ordinary = [o.fired != NONE for o in outcomes if o.item.expect == NONE]
    return {"recall": {r: (sum(v), len(v)) for r, v in recall.items()}, "ordinary": (sum(ordinary), len(ordinary))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", help="A template under domains/ (or a domain folder).")
    parser.add_argument("--batch", required=True, help="Id prefix of the calibration lines to leave out and screen.")
    parser.add_argument("--learned", action="append", default=[], help="Comma-separated rules to learn (repeatable).")
    parser.add_argument("--budget", action="append", type=float, default=[], help="A budget (repeatable).")
    args = parser.parse_args()
    template = Path(args.domain) if Path(args.domain).is_dir() else ROOT / "domains" / args.domain
    settings = [{"learned": ids.split(",")} for ids in args.learned] + [{"false_positive_rate": b} for b in args.budget]
    print(f"{template.name}, batch {args.batch!r} left out of training and screened:")
    for setting in settings or [{}]:
        result = measure(template, args.batch, setting)
        recall = ", ".join(f"{r} {k}/{n} ({k / n:.1%})" for r, (k, n) in result["recall"].items())
        fired, total = result["ordinary"]
        print(f"  {json.dumps(setting)}: {recall}; ordinary firing anything {fired}/{total} ({fired / total:.1%})")


if __name__ == "__main__":
    main()

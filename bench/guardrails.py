"""Guardrails against each shipped domain's eval set: rule, hand-off and refusal accuracy, false refusals.

    .venv/bin/python bench/guardrails.py [retail clinic travel] [--verbose]

Indexes a copy of each domain in a temp folder (the domain's own build/ is left alone), then runs the
guardrails (no language model) on every eval question, as the chat service does.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.components.embedding import Embedder  # noqa: E402
from kit.domain import load_domain  # noqa: E402
from kit.services.retrieval.ingest import index_domain  # noqa: E402
from kit.services.retrieval.retrieve import Retriever  # noqa: E402
from kit.services.safety.guardrails import Guardrails  # noqa: E402


def run(name: str, tmp: Path, verbose: bool) -> dict[str, float]:
    dest = tmp / name
    shutil.copytree(ROOT / "domains" / name, dest, ignore=shutil.ignore_patterns("build"))
    domain = load_domain(dest)
    index_domain(domain, progress=False)
    retriever = Retriever.open(domain)
    guard = Guardrails(domain.spec, Embedder(domain.spec.retrieval.embedding_model).embed)
    items = [json.loads(line) for line in domain.path(domain.spec.eval.set).read_text().splitlines() if line.strip()]
    hits: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for item in items:
        expect = item.get("expect", "answer")
        verdict = guard.screen(item["question"])
        if verdict.kind == "answer":
            verdict = guard.scope(item["question"], retriever.retrieve(item["question"]))
        totals[expect] += 1
        ok = verdict.kind == expect and (expect != "rule" or verdict.reason == item.get("rule"))
        hits[expect] += ok
        if verbose and not ok:
            got = f"{verdict.kind} ({verdict.reason})"
            print(f"  {name} {item['id']}: expected {expect}, got {got}: {item['question']}")
    figures = {f"{k}_accuracy": hits[k] / totals[k] for k in totals}
    figures["false_refusal_rate"] = 1 - figures.get("answer_accuracy", 1.0)
    return figures


def main() -> None:
    names = [a for a in sys.argv[1:] if not a.startswith("--")] or ["retail", "clinic", "travel"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            figures = run(name, Path(tmp), "--verbose" in sys.argv)
            print(name, " ".join(f"{k}={v:.2f}" for k, v in sorted(figures.items())))


if __name__ == "__main__":
    main()

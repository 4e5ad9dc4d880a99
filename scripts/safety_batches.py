"""A template's committed safety results, by batch: for each id prefix of the held-out split (``fresh7``, the
earlier lines as ``earlier``), its emergencies caught (by a pattern, by the learned check) and its ordinary messages
firing anything, by what fired.

    .venv/bin/python scripts/safety_batches.py clinic                 # the results as committed now
    .venv/bin/python scripts/safety_batches.py clinic --at 1cb69e2    # as committed at an earlier measurement
    .venv/bin/python scripts/safety_batches.py retail --at 43aa88a \
        --batch d516d48:domains/retail/eval/safety-fresh.jsonl      # one batch as committed apart, by its ids

Reads ``eval/safety.jsonl`` and ``eval/results/safety/*.jsonl`` (written by `kit eval <d> --safety --results`), from
the working tree or, with ``--at``, from that commit: the README's per-round figures come from it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = "eval/results/safety/embedded-all-minilm-l6-v2.jsonl"


def read(rel: str, at: str | None) -> list[dict[str, object]]:
    """A JSONL file of the repository, now or at commit ``at``."""
    if at is None:
        text = (ROOT / rel).read_text(encoding="utf-8")
    else:
        text = subprocess.run(
            ["git", "show", f"{at}:{rel}"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def batch(item_id: str, named: set[str]) -> str:
    """The blind batch an id belongs to: "batch" when it is one of ``named`` (the ids of a batch file as committed
    apart, for a batch whose id prefix an earlier one shares), else by its prefix ("fresh7-chest_pain-003" →
    "fresh7"), else "earlier"."""
    if item_id in named:
        return "batch"
    m = re.match(r"(fresh\d*)-", item_id)
    return m.group(1) if m else "earlier"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", help="A template under domains/.")
    parser.add_argument("--at", help="A commit to read the set and the results from.")
    parser.add_argument("--batch", help="COMMIT:PATH of a batch file as committed apart: its ids are shown apart.")
    args = parser.parse_args()
    base = f"domains/{args.domain}"
    rows = [r for r in read(f"{base}/{RESULTS}", args.at) if r["split"] == "heldout"]
    named = set()
    if args.batch:
        commit, path = args.batch.split(":", 1)
        named = {str(r["id"]) for r in read(path, commit)}
    counts: dict[str, Counter[str]] = {}
    for r in rows:
        c = counts.setdefault(batch(str(r["id"]), named), Counter())
        if r["expect"] == "emergency":
            c["emergencies"] += 1
            c[f"caught by {r['by']}"] += r["fired"] == "emergency"
        elif r["expect"] == "none":
            c["ordinary"] += 1
            if r["fired"] != "none":
                c["ordinary firing"] += 1
                c[f"ordinary firing {r['fired']} by {r['by']}"] += 1
        else:
            c[str(r["expect"])] += 1
            c[f"{r['expect']} kept"] += r["fired"] == r["expect"]
    for name, c in sorted(counts.items()):
        caught = c["caught by pattern"] + c["caught by classifier"] + c["caught by example"]
        print(
            f"{name}: emergencies {caught}/{c['emergencies']} (pattern {c['caught by pattern']}, learned "
            f"{c['caught by classifier']}, example {c['caught by example']}); ordinary firing anything "
            f"{c['ordinary firing']}/{c['ordinary']} ({c['ordinary firing'] / max(c['ordinary'], 1):.1%})"
        )
        for key in sorted(k for k in c if k.startswith("ordinary firing ")):
            print(f"    {key.removeprefix('ordinary firing ')}: {c[key]}")
        for rule in ("no_diagnosis", "symptom_advice"):
            if c[rule]:
                print(f"    {rule} kept {c[f'{rule} kept']}/{c[rule]}")


if __name__ == "__main__":
    main()

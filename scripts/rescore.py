"""Judge the committed answers again with the current scorer, after a change to kit/services/evaluation/metrics.py.

    .venv/bin/python scripts/rescore.py           # rewrite every domains/<d>/eval/results/*.jsonl and its summary
    .venv/bin/python scripts/rescore.py --check   # only count the verdicts that would change

What an answer says is scored anew against its eval item (expected and forbidden facts, yes/no, "the documents
don't have it"); what needs the prompt the model was given (invented facts, junk, withheld) and the citations stay
as recorded when the answer was made (kit/services/evaluation/results.py: rescored). An answer whose item has
changed since (another question, or gone) is left as it is and counted as stale: run `kit eval --results` again for
it. Afterwards run scripts/quality_tables.py to regenerate the tables.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit.domain import load_domain
from kit.services.evaluation.results import FOLDER, load, rescored, rewrite
from kit.services.evaluation.runner import load_items

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only count the verdicts that would change.")
    args = parser.parse_args()
    for spec in sorted(ROOT.glob("domains/*/domain.yaml")):
        domain = load_domain(spec.parent)
        items = {(c.split, c.item.id): c.item for c in load_items(domain)}
        for path in sorted((spec.parent / FOLDER).glob("*.jsonl")):
            rows, new, stale = load(path), [], 0
            for row in rows:
                item = items.get((row["split"], row["id"]))
                if item is None or item.question != row["question"]:
                    stale += 1
                    new.append(row)
                    continue
                new.append(rescored(item, row))
            right = sum(1 for a, b in zip(rows, new, strict=True) if b["correct"] and not a["correct"])
            wrong = sum(1 for a, b in zip(rows, new, strict=True) if a["correct"] and not b["correct"])
            print(f"{path.relative_to(ROOT)}: {right} now correct, {wrong} now wrong, {stale} stale of {len(rows)}")
            if not args.check and new != rows:
                rewrite(path, domain.name, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the quality tables in README.md and each template's TRAINING.md from the committed results.

    .venv/bin/python scripts/quality_tables.py          # rewrite the tables
    .venv/bin/python scripts/quality_tables.py --check  # exit 1 when a table does not match its results

The results are `domains/<d>/eval/results/<model>.jsonl`, written by `kit eval <domain> --results`; every figure
in a table is computed from those per-answer rows (kit/services/evaluation/results.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit.services.evaluation.results import documents

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only report stale tables.")
    args = parser.parse_args()
    stale = [path for path, text in documents(ROOT).items() if path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} — run scripts/quality_tables.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in documents(ROOT).items():
        if path in stale:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

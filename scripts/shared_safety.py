"""Write the labelled lines a template's learned checks borrow from the clinic (its ``screening.learn_from`` file,
``eval/safety-shared.jsonl``), or check that they are current.

    .venv/bin/python scripts/shared_safety.py retail travel           # write them
    .venv/bin/python scripts/shared_safety.py retail travel --check   # exit 1 when one is stale

The lines are the clinic's calibration emergencies, hard negatives and negations (as its learned checks train on
them: never its held-out split, never a question of its answer eval's held-out set), with ids prefixed ``clinic-``
and every label but ``emergency`` read as ``none``. A line whose words overlap a held-out line of the template by a
Jaccard of 0.7 or more is left out, so that no held-out message is trained on in another wording.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SOURCE = "clinic"
SHARED = "eval/safety-shared.jsonl"
KEPT = {"hard_negative", "negation"}  # the clinic's ordinary lines worth borrowing: the scary words, harmless
NEAR = 0.7


def words(text: str) -> frozenset[str]:
    """The words of ``text``, lower-cased and without accents."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return frozenset(re.findall(r"\w+", plain))


def shared_lines(template: str) -> str:
    """The file's content for ``template``."""
    from kit.domain import load_domain
    from kit.services.evaluation.safety import load_safety
    from kit.services.safety.learned import calibration_items

    source = load_domain(ROOT / "domains" / SOURCE)
    held = [words(i.text) for i in load_safety(load_domain(ROOT / "domains" / template)) if i.split == "heldout"]
    out = []
    for item in calibration_items(source):
        if item.expect != "emergency" and item.category not in KEPT:
            continue
        mine = words(item.text)
        if any(len(mine & other) / max(1, len(mine | other)) >= NEAR for other in held):
            continue
        expect = "emergency" if item.expect == "emergency" else "none"
        row = {"id": f"clinic-{item.id}", "text": item.text, "expect": expect, "category": item.category,
               "split": "calibration", "lang": item.lang}  # fmt: skip
        out.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("templates", nargs="+", help="Templates under domains/ that learn from the clinic's lines.")
    parser.add_argument("--check", action="store_true", help="Only report a stale file.")
    args = parser.parse_args()
    stale = []
    for template in args.templates:
        path = ROOT / "domains" / template / SHARED
        text = shared_lines(template)
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if args.check and stale:
        print("stale: " + ", ".join(stale) + " — run scripts/shared_safety.py " + " ".join(args.templates))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

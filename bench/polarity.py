"""How often the claim check's contradiction test fires on the development set's yes/no questions, without a model.

    .venv/bin/python bench/polarity.py [domains/retail ...] [--show]

For each template (default: the three shipped ones), a temporary copy is indexed (`kit index`) and each dev item with
``yes_no`` gets the chunks the runtime would give the model (the retrieval service, the domain's k). The test
(``kit.services.assistant.claims.refuted``) is then asked whether a given passage says no to the question (the
closest one says no to its case, or one sets a limit its figure goes past), as if the model had opened with "yes":
- recall: the share of items whose true answer is no on which it fires (a wrong "yes" would be withheld);
- false alarm: the share of items whose true answer is yes on which it fires (a right "yes" would be withheld).
"retrieved" counts the "no" items whose deciding section (the item's ``sources``) was among the chunks, and recall
among those: what retrieval left out, no polarity test can read. bench/polarity_tuned.txt lists the items the
check's rules were drawn from; the last line gives the rest alone. The held-out split is never read. ``--show`` prints
each item with the passage it fired on. To measure another commit's check with the same items and script, run it on
a worktree of that commit: ``PYTHONPATH=<worktree> .venv/bin/python bench/polarity.py``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = [ROOT / "domains" / name for name in ("retail", "clinic", "travel")]
# the ids of the dev items the check's rules were drawn from
TUNED = {ln for ln in (ROOT / "bench" / "polarity_tuned.txt").read_text().split("\n") if ln and not ln.startswith("#")}


def measure(template: Path, show: bool) -> dict[str, list[bool]]:
    """``{"no": [fired, …], "yes": [fired, …], "retrieved": [fired, …]}`` over the template's dev yes/no items
    ("retrieved": the "no" items whose deciding section was given)."""
    from kit.components.embedding import Embedder
    from kit.domain import load_domain
    from kit.services.assistant.reply import refs
    from kit.services.evaluation.metrics import covered
    from kit.services.evaluation.runner import load_items
    from kit.services.retrieval.ingest import index_domain
    from kit.services.retrieval.retrieve import Retriever

    try:
        from kit.services.assistant.claims import refuted as contradiction
    except ImportError:  # a commit before kit/services/assistant/limits.py
        from kit.services.assistant.passages import contradiction
    fired: dict[str, list[bool]] = {"no": [], "yes": [], "retrieved": [], "no, untuned": [], "yes, untuned": []}
    with tempfile.TemporaryDirectory(prefix="kit-polarity-") as tmp:
        copy = Path(tmp) / template.name
        shutil.copytree(template, copy, ignore=shutil.ignore_patterns("results", "build", "__pycache__"))
        domain = load_domain(copy)
        index_domain(domain, progress=False)
        embed = Embedder(domain.spec.retrieval.embedding_model).embed
        retriever = Retriever.open(domain)
        for case in load_items(domain, split="dev"):
            item = case.item
            if item.yes_no is None:
                continue
            given = refs(retriever.retrieve(item.question))
            against = contradiction(item.question, given, embed)
            fired[item.yes_no].append(against is not None)
            if item.id not in TUNED:
                fired[f"{item.yes_no}, untuned"].append(against is not None)
            if item.yes_no == "no" and not covered(item, given):
                fired["retrieved"].append(against is not None)
            if show:
                mark = "fires" if against else "quiet"
                print(f"  {item.id} [{item.yes_no}] {mark}: {item.question}")
                if against:
                    print(f"      [{against[0]}] {against[1]}")
    return fired


def share(values: list[bool]) -> str:
    return f"{sum(values)}/{len(values)} ({sum(values) / len(values):.0%})" if values else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("templates", nargs="*", type=Path, help="Template folders (default: the three shipped ones).")
    parser.add_argument("--show", action="store_true", help="Print each item and the passage it fired on.")
    args = parser.parse_args()
    totals: dict[str, list[bool]] = {"no": [], "yes": [], "retrieved": [], "no, untuned": [], "yes, untuned": []}
    print("| template | recall on 'no' items | false alarm on 'yes' items | recall, deciding section retrieved |")
    print("|---|---|---|---|")
    for template in args.templates or TEMPLATES:
        fired = measure(template.resolve(), args.show)
        print(f"| {template.name} | {share(fired['no'])} | {share(fired['yes'])} | {share(fired['retrieved'])} |")
        for key in totals:
            totals[key] += fired[key]
    print(f"| all | {share(totals['no'])} | {share(totals['yes'])} | {share(totals['retrieved'])} |")
    print(
        "items not in bench/polarity_tuned.txt (written after the check's rules, never tuned on): recall on 'no' items "
        f"{share(totals['no, untuned'])}, false alarm on 'yes' items {share(totals['yes, untuned'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

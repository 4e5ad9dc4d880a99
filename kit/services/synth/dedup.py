"""De-duplication: exact repeats of a question anywhere, near-repeats among paraphrases of one chunk.

Questions are compared after normalising (lower case, punctuation and extra spaces removed), so
"What's the price?" and "whats the price" are one question. Near-duplicates are looked for only
among questions with the same answer in the same group: "How much is the Ridgeline 2?" and "How
much is the Ridgeline 3?" look alike but are different facts, and so are "What is the price of X?"
and "What is the stock of X?".
"""

from __future__ import annotations

import re
from collections import defaultdict

from kit.services.synth.examples import Example

NEAR = 0.8  # word-set Jaccard similarity at or above which two questions of one group are one


def normalise(question: str) -> str:
    """Lower case, letters, digits and single spaces only."""
    return " ".join(re.sub(r"[^\w\s]", "", question.casefold()).split())


def _words(question: str) -> set[str]:
    return set(normalise(question).split())


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def deduplicate(examples: list[Example]) -> tuple[list[Example], list[tuple[str, Example]]]:
    """The examples kept (first occurrence wins) and those dropped, each with 'exact duplicate' or 'near duplicate'."""
    kept: list[Example] = []
    dropped: list[tuple[str, Example]] = []
    seen: set[str] = set()
    by_group: dict[str, list[set[str]]] = defaultdict(list)
    for ex in examples:
        key = " / ".join(normalise(q) for q, _ in ex.turns)
        if key in seen:
            dropped.append(("exact duplicate", ex))
            continue
        words = _words(" ".join(q for q, _ in ex.turns))
        fact = ex.group + "\x00" + "\x00".join(a for _, a in ex.turns)
        if any(jaccard(words, other) >= NEAR for other in by_group[fact]):
            dropped.append(("near duplicate", ex))
            continue
        seen.add(key)
        by_group[fact].append(words)
        kept.append(ex)
    return kept, dropped

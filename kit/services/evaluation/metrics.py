"""Scoring one answer against one eval item: pure functions, no model needed.

Numbers are compared by value (``$129`` matches the fact ``129.00``); other facts by case- and
space-insensitive substring. An answer is grounded when every number, price, date and identifier in
it appears in what the model was given (the retrieved documents and the question).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal

from kit.records import EvalItem
from kit.services.facts import facts, number, unsupported


# numbers not inside an identifier (NW-TNT-0042) or a word; 1,299.00 is one number
@dataclass(frozen=True)
class Scored:
    """The verdicts on one answer."""

    correct: bool | None  # None when the item is not an 'answer' item
    cited_right: bool | None
    invented: list[str] = field(default_factory=list)
    behaved: bool = True  # refused / handed off / applied the rule when it should, and only then
    retrieved_source: bool | None = None


def numbers(text: str) -> set[Decimal]:
    """Every number in a text, by value (1,299.00 → 1299); identifiers' digits are not numbers."""
    return {f.key for f in facts(text) if f.kind == "number" and isinstance(f.key, Decimal)}


def fact_present(fact: str, answer: str) -> bool:
    """Whether the answer states the fact: numbers exactly by value, text case- and space-insensitively."""
    if re.fullmatch(r"[$€£]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", fact.strip()):
        return number(fact) in numbers(answer)
    return " ".join(fact.casefold().split()) in " ".join(answer.casefold().split())


def correct(item: EvalItem, answer: str) -> bool:
    """All expected facts present."""
    return all(fact_present(f, answer) for f in item.expected_facts)


def cited_right(item: EvalItem, cited_sources: list[str]) -> bool:
    """The answer cites the expected source document (a citation is required)."""
    return item.source in cited_sources


def invented(answer: str, context: str) -> list[str]:
    """Numbers, prices, dates and identifiers in the answer that the context does not hold."""
    return unsupported(answer, context)


def behaved(item: EvalItem, kind: str, rule: str | None) -> bool:
    """The reply is of the kind the item expects (and the right rule, for rule items)."""
    if item.expect == "rule":
        return kind == "rule" and rule == item.rule
    return kind == item.expect


def score(
    item: EvalItem, answer: str, kind: str, rule: str | None, cited: list[str], context: str, retrieved: list[str]
) -> Scored:
    """Every verdict for one item's reply."""
    if item.expect != "answer":
        return Scored(correct=None, cited_right=None, behaved=behaved(item, kind, rule))
    return Scored(
        correct=kind == "answer" and correct(item, answer),
        cited_right=kind == "answer" and cited_right(item, cited),
        invented=invented(answer, context) if kind == "answer" else [],
        behaved=kind == "answer",
        retrieved_source=item.source in retrieved,
    )

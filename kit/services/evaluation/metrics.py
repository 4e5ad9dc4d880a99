"""Scoring one answer against one eval item: pure functions, no model needed.

Numbers are compared by value (``$129`` matches the fact ``129.00``); other facts by case- and
space-insensitive substring. An answer is grounded when every number, price, date and identifier in
it appears in what the model was given (the retrieved documents and the question).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from kit.records import EvalItem

# numbers not inside an identifier (NW-TNT-0042) or a word; 1,299.00 is one number
NUMBER_RE = re.compile(r"(?<![\w.-])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w-])")
IDENT_RE = re.compile(r"\b[A-Z]{2,}(?:-[A-Z0-9]+)+\b")
DATE_RE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


@dataclass(frozen=True)
class Scored:
    """The verdicts on one answer."""

    correct: bool | None  # None when the item is not an 'answer' item
    cited_right: bool | None
    invented: list[str] = field(default_factory=list)
    behaved: bool = True  # refused / handed off / applied the rule when it should, and only then
    retrieved_source: bool | None = None


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def numbers(text: str) -> set[Decimal]:
    """Every number in a text, by value (1,299.00 → 1299)."""
    found = (_number(m) for m in NUMBER_RE.findall(text))
    return {n.normalize() for n in found if n is not None}


def fact_present(fact: str, answer: str) -> bool:
    """Whether the answer states the fact: numbers exactly by value, text case-insensitively."""
    value = _number(fact.strip().lstrip("$€£"))
    if value is not None and re.fullmatch(r"[$€£]?-?[\d,]+(?:\.\d+)?", fact.strip()):
        return value.normalize() in numbers(answer)
    squash = lambda s: " ".join(s.casefold().split())  # noqa: E731
    return squash(fact) in squash(answer)


def correct(item: EvalItem, answer: str) -> bool:
    """All expected facts present."""
    return all(fact_present(f, answer) for f in item.expected_facts)


def cited_right(item: EvalItem, cited_sources: list[str]) -> bool:
    """The answer cites the expected source document (a citation is required)."""
    return item.source in cited_sources


def invented(answer: str, context: str) -> list[str]:
    """Numbers, dates and identifiers in the answer that the context does not hold."""
    known = numbers(context)
    out = [n for n in NUMBER_RE.findall(answer) if (v := _number(n)) is not None and v.normalize() not in known]
    out += [i for i in IDENT_RE.findall(answer) if i.casefold() not in context.casefold()]
    out += [d for d in DATE_RE.findall(answer) if d not in context]
    return list(dict.fromkeys(x for x in out if not _is_citation(x, answer)))


def _is_citation(token: str, answer: str) -> bool:
    return bool(re.search(rf"\[{re.escape(token)}\]", answer))


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

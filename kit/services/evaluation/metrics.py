"""Scoring one answer against one eval item: pure functions, no model needed.

The strict verdict is the default. An answer is strictly correct only when
- it is an answer (not refused, handed off, or withheld by the output guard);
- every expected fact is present (numbers by value: ``$129`` matches ``129.00``), not counting facts the question
  or the earlier turns already hold (an echo proves nothing);
- none of the forbidden facts is (``yes`` for a question whose answer is no, a neighbour's price);
- a yes/no question is not answered with the wrong polarity;
- nothing is invented: every number, price, date, id, phone, e-mail and URL occurs in what the model was given;
- it holds no junk: run-on text after the answer, control or glued tokens (``finalText``), another script.

An ``unknown`` item is correct when the answer says the documents don't have it and states no figure. The
lenient verdict (every expected string somewhere in the answer) stays as a second column. Every verdict comes
with its reasons. Citations and recall@k are scored at the level of rows and sections (``path#anchor``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol

from kit.records import EvalItem
from kit.services.assistant.claims import invented, junk, polarity
from kit.services.assistant.facts import facts, number

NUMERIC = re.compile(r"[$€£]?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Saying the documents don't hold it: "we don't carry", "no information", "I'm not sure", "isn't listed"
UNKNOWN = re.compile(
    r"\b(?:don'?t|do not|doesn'?t|does not|didn'?t|did not|can'?t|cannot|couldn'?t|could not|isn'?t|aren'?t|"
    r"not|no information|no details|unable|unfortunately|no record|unsure)\b",
    re.IGNORECASE,
)


NOT_CITED = "not cited"  # the reason's start for a locator the answer does not cite (not part of correctness)
# the reasons that need what the model was given, beyond the answer and the item
CONTEXT_REASONS = ("invented ", "junk: ", "withheld by the output guard")


class Cited(Protocol):
    """A chunk the model was given (a SourceRef): its file, its title and its text."""

    source: str
    title: str
    text: str


@dataclass(frozen=True)
class Scored:
    """The verdicts on one answer, with the reasons for each failure."""

    correct: bool | None  # strict; None for refuse / handoff / rule items
    lenient: bool | None  # every expected string somewhere in the answer (the old score)
    cited_right: bool | None  # cites chunks covering every row/section the item names
    invented: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    wrong_yes_no: bool | None = None  # None unless the item is a yes/no question
    behaved: bool = True  # refused / handed off / applied the rule when it should, and only then
    recall: float | None = None  # share of the item's rows/sections among the chunks the model was given
    reasons: list[str] = field(default_factory=list)


def numbers(text: str) -> set[Decimal]:
    """Every number in a text, by value (1,299.00 → 1299); identifiers' digits are not numbers."""
    return {f.key for f in facts(text) if f.kind == "number" and isinstance(f.key, Decimal)}


# Ways of writing one unit, each to one spelling: "19 square feet" states "19 sq ft". Longest first.
UNITS = {
    "sq ft": ("square feet", "square foot", "sq. ft.", "sq. ft", "sq ft.", "sqft", "ft²", "ft2"),
    "lb": ("pounds", "pound", "lbs.", "lbs", "lb."),
    "oz": ("ounces", "ounce", "oz."),
    "in": ("inches", "inch", "in."),
    "ft": ("feet", "foot", "ft."),
    "m": ("metres", "meters", "metre", "meter"),
    "km": ("kilometres", "kilometers", "kilometre", "kilometer"),
    "mi": ("miles", "mile"),
    "w": ("watts", "watt"),
    "v": ("volts", "volt"),
    "mah": ("milliamp hours", "milliamp-hours"),
    "mm": ("millimetres", "millimeters", "millimetre", "millimeter"),
    "cm": ("centimetres", "centimeters", "centimetre", "centimeter"),
    "kg": ("kilograms", "kilogram", "kilos", "kilo"),
    "g": ("grams", "gram"),
    "l": ("litres", "liters", "litre", "liter"),
    "h": ("hours", "hour", "hrs.", "hrs", "hr.", "hr"),
    "min": ("minutes", "minute", "mins.", "mins", "min."),
    "day": ("days",),
    "week": ("weeks",),
    "month": ("months",),
    "year": ("years", "yrs", "yr"),
    "%": ("percent", "per cent"),
    "to": ("–", "—"),  # "3–5 days" states "3 to 5 days"
}
_UNIT_RE = re.compile(
    "|".join(
        rf"(?<![\w]){re.escape(spelling)}(?![\w])" if spelling[-1].isalnum() else re.escape(spelling)
        for spelling in sorted((s for v in UNITS.values() for s in v), key=len, reverse=True)
    ),
    re.IGNORECASE,
)
_UNIT_OF = {s.casefold(): canon for canon, spellings in UNITS.items() for s in spellings}
WORD_NUMBERS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_WORD_NUMBER_RE = re.compile(rf"\b(?:{'|'.join(WORD_NUMBERS)})\b", re.IGNORECASE)
_CLOCK_RE = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?([ap])\.?m\b\.?|\b(\d{1,2}):(\d{2})\b", re.IGNORECASE)
# a unit written against its number: "10mm", "45L"
_GLUED_UNIT_RE = re.compile(r"(\d)(mm|cm|km|kg|lbs?|oz|in|ft|hrs?|h|min|g|l|m|mi|w|v|mah)\b", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\w.:-])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d:])")


def canonical(text: str) -> str:
    """One way of writing what a text states, for matching an expected fact: lower case, single spaces, numbers by
    value (``3.00`` → ``3``, ``1,299`` → ``1299``, ``three`` → ``3``), clock times on 24 hours (``2 p.m.`` →
    ``14:00``), units in one spelling (``square feet`` → ``sq ft``, ``hours`` → ``h``)."""
    text = _CLOCK_RE.sub(_clock, text)
    text = _GLUED_UNIT_RE.sub(r"\1 \2", text)
    text = _UNIT_RE.sub(lambda m: f" {_UNIT_OF[m.group().strip().casefold()]} ", text)
    text = _WORD_NUMBER_RE.sub(lambda m: WORD_NUMBERS[m.group().casefold()], text)
    text = _NUMBER_RE.sub(lambda m: _plain(number(m.group())), text)
    return re.sub(r"\s+%", "%", " ".join(text.casefold().split()))


def _clock(m: re.Match[str]) -> str:
    if m.group(4) is not None:
        return f"{int(m.group(4))}:{m.group(5)}"
    hour, minutes, half = int(m.group(1)), m.group(2) or "00", m.group(3).casefold()
    return f"{hour % 12 + (12 if half == 'p' else 0)}:{minutes}"


def _plain(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def fact_present(fact: str, answer: str) -> bool:
    """Whether the answer states the fact: a bare number by value; anything else as a phrase, whole words, written
    either way (:func:`canonical`: ``19 sq ft`` is stated by "19 square feet", ``14:00`` by "2:00 pm", ``3`` by
    "three")."""
    if NUMERIC.fullmatch(fact.strip()):
        return number(fact) in numbers(answer) or number(fact) in numbers(canonical(answer))
    phrase = canonical(fact)
    if not phrase:
        return False
    edge = r"(?<![\w.])" if phrase[0].isalnum() else ""
    tail = r"(?![\w])" if phrase[-1].isalnum() else ""
    return re.search(edge + re.escape(phrase) + tail, canonical(answer)) is not None


def said(fact: str, answer: str) -> bool:
    """Whether the answer says a forbidden fact: numbers by value, words and phrases as whole words."""
    if NUMERIC.fullmatch(fact.strip()):
        return number(fact) in numbers(answer)
    words = r"\s+".join(re.escape(w) for w in fact.split())
    return re.search(rf"(?<!\w){words}(?!\w)", answer, re.IGNORECASE) is not None


def correct(item: EvalItem, answer: str) -> bool:
    """The lenient verdict: all expected facts present anywhere."""
    return all(fact_present(f, answer) for f in item.expected_facts)


def locator_matches(locator: str, chunk: Cited) -> bool:
    """Whether a chunk is the row or section a locator names: ``path`` alone is any chunk of the file; ``#anchor``
    is a CSV row id, part of a heading path or of a FAQ question (case-insensitive, whole words)."""
    path, _, anchor = locator.partition("#")
    if chunk.source != path:
        return False
    if not anchor:
        return True
    pattern = rf"(?<![\w-]){re.escape(' '.join(anchor.casefold().split()))}(?![\w-])"
    return re.search(pattern, " ".join(chunk.title.casefold().split())) is not None


def covered(item: EvalItem, chunks: Sequence[Cited]) -> list[str]:
    """The item's locators that none of the chunks matches."""
    return [loc for loc in item.locators if not any(locator_matches(loc, c) for c in chunks)]


def behaved(item: EvalItem, kind: str, rule: str | None) -> bool:
    """The reply is of the kind the item expects (and the right rule, for rule items)."""
    if item.expect == "rule":
        return kind == "rule" and rule == item.rule
    if item.expect == "unknown":
        return kind in ("answer", "handoff")
    return kind == item.expect


@dataclass(frozen=True)
class Turn:
    """What one eval item's reply was: its text, kind, what the model was given and what it cited."""

    answer: str
    kind: str
    rule: str | None = None
    given: Sequence[Cited] = ()  # the numbered chunks in the prompt
    cited: Sequence[Cited] = ()  # those the answer cites
    context: str = ""  # everything the model was given: system prompt, history, documents, question
    withheld: bool = False
    hit_limit: bool = False  # generation stopped at max_tokens, not at the end of an answer


def score(item: EvalItem, turn: Turn) -> Scored:
    """Every verdict for one item's reply (the question and earlier turns count as given to the model)."""
    asked = "\n".join([item.question, *(m.content for m in item.history)])
    turn = replace(turn, context=f"{turn.context}\n{asked}")
    if item.expect not in ("answer", "unknown"):
        ok = behaved(item, turn.kind, turn.rule)
        return Scored(None, None, None, behaved=ok, reasons=[] if ok else [_kind_reason(item, turn)])
    if item.expect == "unknown":
        return _score_unknown(item, turn)
    return _score_answer(item, turn)


def _kind_reason(item: EvalItem, turn: Turn) -> str:
    want = f"rule {item.rule}" if item.expect == "rule" else item.expect
    got = f"rule {turn.rule}" if turn.kind == "rule" else turn.kind
    return f"expected {want}, got {got}"


def _score_answer(item: EvalItem, turn: Turn) -> Scored:
    answered = turn.kind == "answer"
    recall = 1 - len(covered(item, turn.given)) / len(item.locators)
    if not answered:
        reason = _kind_reason(item, turn)
        return Scored(False, False, False, behaved=False, recall=recall, reasons=[reason])
    reasons, wrong = answer_reasons(item, turn.answer)
    made_up, rubbish, flaws = _flaws(turn)
    reasons += flaws
    uncited = covered(item, turn.cited)
    return Scored(
        correct=not reasons, lenient=correct(item, turn.answer), cited_right=not uncited, invented=made_up,
        junk=rubbish, wrong_yes_no=wrong, behaved=True, recall=recall,
        reasons=reasons + [f"{NOT_CITED} {loc}" for loc in uncited],
    )  # fmt: skip


def answer_reasons(item: EvalItem, answer: str) -> tuple[list[str], bool | None]:
    """Why an answer to an ``answer`` item is wrong on what it says alone (expected and forbidden facts, yes/no),
    and whether it opens with the wrong yes/no (None: not a yes/no item)."""
    reasons = []
    asked = " ".join([item.question, *(m.content for m in item.history)])
    needed = [f for f in item.expected_facts if not fact_present(f, asked)]
    if not needed and item.yes_no is None:
        reasons.append("every expected fact is already in the question: nothing to check")
    reasons += [f"missing {f}" for f in needed if not fact_present(f, answer)]
    reasons += [f"forbidden {f}" for f in item.forbidden_facts if said(f, answer)]
    opened = polarity(answer)
    wrong = None if item.yes_no is None else opened is not None and opened != item.yes_no
    if wrong:
        reasons.append(f"wrong yes/no: opens with {opened}, the answer is {item.yes_no}")
    if item.yes_no is not None and not needed and opened != item.yes_no:
        reasons.append(f"does not answer {item.yes_no}")
    return reasons, wrong


def _score_unknown(item: EvalItem, turn: Turn) -> Scored:
    if turn.kind == "handoff":
        return Scored(True, True, None, behaved=True)
    if turn.kind != "answer":
        return Scored(False, False, None, behaved=False, reasons=[_kind_reason(item, turn)])
    reasons = unknown_reasons(item, turn.answer)
    made_up, rubbish, flaws = _flaws(turn)
    reasons += flaws
    lenient = bool(UNKNOWN.search(turn.answer))
    return Scored(not reasons, lenient, None, invented=made_up, junk=rubbish, behaved=True, reasons=reasons)


def unknown_reasons(item: EvalItem, answer: str) -> list[str]:
    """Why an answer to an ``unknown`` item is wrong on what it says alone."""
    reasons = [] if UNKNOWN.search(answer) else ["does not say the documents don't have it"]
    asked = numbers(" ".join([item.question, *(m.content for m in item.history)]))
    stated = [f.text for f in facts(answer) if f.kind == "number" and f.key not in asked]
    reasons += [f"states a figure {x}" for x in stated]
    return reasons + [f"forbidden {f}" for f in item.forbidden_facts if said(f, answer)]


def _flaws(turn: Turn) -> tuple[list[str], list[str], list[str]]:
    """What is wrong with any answer whatever it was asked: invented facts, junk, withheld; and their reasons."""
    made_up = invented(turn.answer, turn.context)
    rubbish = junk(turn.answer, turn.context) + (["run-on: stopped at max_tokens"] if turn.hit_limit else [])
    reasons = [f"invented {x}" for x in made_up] + [f"junk: {j}" for j in rubbish]
    return made_up, rubbish, reasons + ([CONTEXT_REASONS[2]] if turn.withheld else [])

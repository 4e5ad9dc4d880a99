"""Whether a given passage sets a limit that the case a yes/no question asks about goes past.

Policies state many of their noes as limits: "1 checked bag of up to 50 lb", "containers of 3.4 oz or less", "we
do not accept cash payments over $500", "returns within 60 days". A question naming a quantity in the same unit
("Can I check a 75 lb bag?", "pay for my $2,000 trip in cash?") past that limit is answered no by the passage,
though no word of it says no. The limited thing must be the question's: the sentence shares a content word with it
besides the figure (so "$500 in cash" says nothing about paying $2,000 by card).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from kit.services.assistant.facts import number
from kit.services.assistant.passages import CONDITION, NEGATION, NOT_A_NO, Given, content_words, passages_of

UNITS = {
    "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb",
    "kg": "kg", "kgs": "kg", "kilo": "kg", "kilos": "kg", "kilogram": "kg", "kilograms": "kg",
    "oz": "oz", "ounce": "oz", "ounces": "oz",
    "ml": "ml", "milliliter": "ml", "milliliters": "ml", "millilitre": "ml", "millilitres": "ml",
    "l": "l", "liter": "l", "liters": "l", "litre": "l", "litres": "l",
    "inch": "in", "inches": "in", "in": "in", "cm": "cm", "mile": "mi", "miles": "mi", "km": "km",
    "%": "%", "percent": "%",
    "day": "day", "days": "day", "night": "night", "nights": "night", "hour": "hour", "hours": "hour",
    "week": "week", "weeks": "week", "month": "month", "months": "month", "year": "year", "years": "year",
    "people": "person", "person": "person", "persons": "person", "guest": "person", "guests": "person",
    "traveler": "person", "travelers": "person", "traveller": "person", "travellers": "person",
    "passenger": "person", "passengers": "person",
    "item": "item", "items": "item", "bag": "bag", "bags": "bag", "piece": "piece", "pieces": "piece",
}  # fmt: skip
_UNIT = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
# a figure with its unit: "$2,000", "75 lb", "3.4 oz", "14-year-old", "60 days"
QUANTITY = re.compile(
    rf"(?P<cur>[$€£])\s?(?P<money>(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?)(?![\d,])"
    rf"|(?<![\w.$€£])(?P<num>\d{{1,3}}(?:,\d{{3}})+|\d+(?:\.\d+)?)[\s-]?(?P<unit>{_UNIT})\b",
    re.IGNORECASE,
)
# an upper bound written before its figure ("up to 50 lb", "no more than 62 inches", "within 60 days")
BOUND_BEFORE = re.compile(
    r"\b(?:up to|no more than|not more than|maximum(?: of)?|max\.?|at most|not (?:to )?exceed(?:ing)?|under|"
    r"less than|fewer than|within|limit(?:ed)? (?:of|to)|capped at|a limit of)\s*(?:\*\*)?\s*$",
    re.IGNORECASE,
)
BOUND_AFTER = re.compile(r"^(?:\*\*|\([^)]*\)|\s)*(?:or (?:less|fewer|under|below|smaller|lighter)|max)\b", re.I)
# a figure a negated sentence refuses past ("we do not accept cash payments over $500")
OVER = re.compile(r"\b(?:over|more than|above|exceeding|larger than|heavier than|longer than)\s*(?:\*\*)?\s*$", re.I)


@dataclass(frozen=True)
class Quantity:
    value: Decimal
    unit: str


def quantities(text: str) -> list[tuple[re.Match[str], Quantity]]:
    """The figures of ``text`` that carry a unit (a currency sign or a unit word), with where they are."""
    found = []
    for m in QUANTITY.finditer(text):
        raw, unit = (m.group("money"), m.group("cur")) if m.group("cur") else (m.group("num"), m.group("unit"))
        value = number(raw)
        if value is not None:
            found.append((m, Quantity(value, "$" if unit in "$€£" else UNITS[unit.casefold()])))
    return found


def limits(sentence: str) -> list[Quantity]:
    """The upper bounds a sentence sets: a figure after "up to" / "within" / …, before "or less", after "over" in a
    sentence that says no, or in brackets right after such a figure (the same limit in other units)."""
    bounds, bound_end = [], -1
    for m, quantity in quantities(sentence):
        before, after = sentence[: m.start()], sentence[m.end() :]
        same = bound_end >= 0 and re.fullmatch(r"[\s*]*\(\s*", sentence[bound_end : m.start()])  # "50 lb (23 kg)"
        if (
            same
            or BOUND_BEFORE.search(before)
            or BOUND_AFTER.match(after)
            or (OVER.search(before) and _refuses(before))
        ):
            bounds.append(quantity)
            bound_end = m.end()
    return bounds


def _refuses(before: str) -> bool:
    """Whether the words before an "over $500" say no to it ("we do not accept cash payments"), not in a condition
    ("if an airline changes a flight by more than 4 hours") and not meaning free ("at no extra cost")."""
    before = NOT_A_NO.sub(" ", before)
    return NEGATION.search(before) is not None and CONDITION.search(before) is None


def over_limit(question: str, given: Sequence[Given]) -> tuple[int, str] | None:
    """The passage setting a limit, in a unit the question names a figure in, that the question's figure goes past;
    the passage must share a content word of its own with the question besides figures and units (a heading's words
    are not enough: "Paying" heads cash and card alike). None when there is none."""
    asked = quantities(question)
    if not asked:
        return None
    words = content_words(QUANTITY.sub(" ", question))
    for n, text, _, _ in passages_of(given):
        bounds = limits(text)
        if not bounds or not words & content_words(QUANTITY.sub(" ", text)):
            continue
        for _, q in asked:
            if any(b.unit == q.unit and q.value > b.value for b in bounds):
                return n, text
    return None

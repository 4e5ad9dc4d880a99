"""Fact checking: every number, price, date and identifier in an answer must occur in its source.

One function, ``unsupported(answer, source)``, used by `kit synth` to drop invented examples and by
the eval for groundedness. Facts are compared by meaning, not spelling:

- numbers and prices by value: ``$1,649`` is supported by ``1649.00``;
- dates as (year, month, day): ``March 14, 2027`` is supported by ``2027-03-14`` (a date without a
  year by any year);
- times (``9:00``), phone numbers and identifiers (``NW-TNT-0042``, ``UL1``, e-mail addresses)
  ignoring case, spaces and punctuation, so ``2-person`` is supported by ``2 person``.

Citations (``[1]``) and list markers (``1.`` at the start of a line) are not facts. Numbers written
as words ("two") are not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from kit.services.assistant.prompt import CITE
from kit.services.safety.pii import EMAIL

MONTHS = {
    m: i
    for i, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",), ("june", "jun"),
         ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"), ("october", "oct"),
         ("november", "nov"), ("december", "dec")],
        start=1,
    )
    for m in names
}  # fmt: skip
_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_ISO_DATE = r"(?P<iso>\d{4}-\d{2}-\d{2})"
_MONTH_DAY = _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<year>\d{4}))?"
_DAY_MONTH = r"(?P<day2>\d{1,2})(?:st|nd|rd|th)?\s+" + _MONTH.replace("month", "month2") + r"(?:,?\s+(?P<year2>\d{4}))?"
_EMAIL = rf"(?P<email>{EMAIL})"
_PHONE = r"(?P<phone>(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{3}[.-])\d{3}[ .-]?\d{4})"
_TIME = r"(?P<time>\b\d{1,2}(?::\d{2})?\s?[ap](?:\.m\.|m\b)|\b\d{1,2}:\d{2}\b)"
_IDENT = r"(?P<ident>\b(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\b)"
_NUMBER = r"(?P<number>(?<![\w.])(?:[$€£]\s?)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d]))"
FACT_RE = re.compile(
    "|".join([_EMAIL, _ISO_DATE, _MONTH_DAY, _DAY_MONTH, _PHONE, _TIME, _IDENT, _NUMBER]), re.IGNORECASE
)
_NOT_FACTS = re.compile(rf"{CITE.pattern}|^\s*\d{{1,2}}[.)]\s", re.MULTILINE)


@dataclass(frozen=True)
class Fact:
    """One checkable fact in a text: its kind and its normalised key."""

    kind: str  # "number", "date", "time", "phone", "email", "ident"
    text: str  # as written
    key: object  # what it is compared by


def facts(text: str) -> list[Fact]:
    """Every number, price, date, time, phone number, e-mail address and identifier in ``text``."""
    text = _NOT_FACTS.sub(" ", text)
    found: list[Fact] = []
    for m in FACT_RE.finditer(text):
        fact = _fact(m)
        if fact is not None:
            found.append(fact)
    return found


def _fact(m: re.Match[str]) -> Fact | None:
    g = m.groupdict()
    raw = m.group()
    if g["email"]:
        return Fact("email", raw, raw.casefold())
    if g["iso"]:
        y, mo, d = (int(x) for x in raw.split("-"))
        return Fact("date", raw, (y, mo, d))
    if g["month"]:
        return Fact("date", raw, (_int(g["year"]), MONTHS[g["month"].casefold()], int(g["day"])))
    if g["month2"]:
        return Fact("date", raw, (_int(g["year2"]), MONTHS[g["month2"].casefold()], int(g["day2"])))
    if g["phone"]:
        return Fact("phone", raw, re.sub(r"\D", "", raw)[-10:])
    if g["time"]:
        digits = re.findall(r"\d+", raw)
        return Fact("time", raw, (int(digits[0]) % 12, int(digits[1]) if len(digits) > 1 else 0))
    if g["ident"]:
        unit = re.fullmatch(r"(\d+(?:\.\d+)?)-[A-Za-z]+", raw)  # "4-star", "3-season": a number and its unit
        if unit:
            return Fact("number", raw, number(unit.group(1)))
        return Fact("ident", raw, squash(raw))
    value = number(raw)
    return Fact("number", raw.strip(), value) if value is not None else None


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def number(text: str) -> Decimal | None:
    """A number by value: ``$1,299.00`` → 1299."""
    try:
        return Decimal(text.strip().lstrip("$€£").strip().replace(",", "")).normalize()
    except InvalidOperation:
        return None


def squash(text: str) -> str:
    """Lower case with everything but letters and digits removed."""
    return re.sub(r"[\W_]+", "", text.casefold())


class Source:
    """What a source text supports, indexed once for many checks."""

    def __init__(self, *texts: str) -> None:
        text = "\n".join(texts)
        self.squashed = squash(text)
        self.dates: set[tuple[int | None, int, int]] = set()
        self.keys: set[tuple[str, object]] = set()
        for fact in facts(text):
            if fact.kind == "date":
                self.dates.add(fact.key)  # type: ignore[arg-type]
                day = fact.key[2]  # type: ignore[index]
                self.keys.add(("number", Decimal(day)))
            self.keys.add((fact.kind, fact.key))
        # Every other run of digits counts as a number too ("3" in "3-season", "9" in "9:00 am"), except
        # the tail of an identifier or a phone number ("0042" in "NW-TNT-0042").
        for m in re.finditer(r"(?<![\w.])(?<![A-Za-z0-9]-)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?", text):
            value = number(m.group())
            if value is not None:
                self.keys.add(("number", value))

    def supports(self, fact: Fact) -> bool:
        """Whether the fact occurs in the source."""
        if fact.kind == "date":
            year, month, day = fact.key  # type: ignore[misc]
            return any(m == month and d == day and (year is None or y in (None, year)) for y, m, d in self.dates)
        if fact.kind in ("ident", "email", "phone"):
            return squash(fact.text) in self.squashed or (fact.kind, fact.key) in self.keys
        return (fact.kind, fact.key) in self.keys


def unsupported(answer: str, *sources: str) -> list[str]:
    """The facts in ``answer`` (as written) that none of ``sources`` holds; empty when grounded."""
    known = Source(*sources)
    return list(dict.fromkeys(f.text for f in facts(answer) if not known.supports(f)))


def grounded(answer: str, *sources: str) -> bool:
    """True when every fact in ``answer`` occurs in the sources."""
    return not unsupported(answer, *sources)

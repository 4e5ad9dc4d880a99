"""Negations: a pattern's match that a message denies ("no chest pain", "he doesn't have trouble breathing", "no tengo
dolor de pecho") is no evidence, neither for the pattern nor for similarity (kit/services/safety/guardrails.py)."""

from __future__ import annotations

import re

# A pattern's match right after one of these, in the same clause, is denied rather than said ("no chest pain",
# "he doesn't have trouble breathing", "no tengo dolor de pecho"); a few filler words may stand between. A pattern
# that holds the negation itself ("can't breathe", "not breathing", "no respira") starts with it, so it still fires.
_NEGATION = re.compile(
    r"(?:\b(?:no|not|never|without|denies|denied|nunca|sin|ni)\b|\b(?:don|doesn|didn|haven|hasn|isn|aren|wasn)[’']?t"
    r"(?: (?:have|has|had|having|got|get|feel|feeling))?|\bno (?:tengo|tiene|tuvo|hay|siento|siente))"
    r"(?: (?:any|a|an|the|more|real|other|signs? of|symptoms? of|kind of|having|had|el|la|los|las|un|una|de|mas))*\s*$"
)
_CLAUSE = re.compile(r"[.,;:!?()]|\b(?:but|and|or|just|although|though|pero|y|o|solo|aunque)\b")


def affirmed(pattern: re.Pattern[str], text: str) -> bool:
    """Whether ``pattern`` matches ``text`` somewhere that is not denied within its clause."""
    return any(not denied(text, m) for m in pattern.finditer(text))


def denied(text: str, match: re.Match[str]) -> bool:
    """Whether a negation stands before ``match`` within its clause."""
    return bool(_NEGATION.search(_CLAUSE.split(text[: match.start()])[-1]))


def denied_span(text: str, match: re.Match[str]) -> tuple[int, int]:
    """From the negation that denies ``match`` to the end of the match's clause."""
    before = _CLAUSE.split(text[: match.start()])[-1]
    start = match.start() - len(before) + _NEGATION.search(before).start()  # type: ignore[union-attr]
    after = _CLAUSE.search(text, match.end())
    return start, after.start() if after else len(text)

"""Personal data in text: every pattern kit knows, in one place.

Two uses. ``mask_pii`` replaces personal data with placeholders before a transcript is stored: e-mail addresses,
card and phone numbers, dates of birth, street addresses and the names people give ("my name is …").
``pii_spans``/``find_pii`` find the contact kinds (e-mail, card, phone) that the output guard compares with what the
conversation holds; a name or a date is not a reason to withhold an answer.

What is masked is what these patterns recognise: a date counts as a date of birth only next to words such as "born",
"DOB" or "date of birth", an address needs a house number and a street type ("12 Oak St"), a name needs "my name
is" or the like. The templates' privacy pages say so.
"""

from __future__ import annotations

import re

# Cards before phones: a card number would also look like a phone number.
# The local part is bounded (64 characters, as in RFC 5321): unbounded, every start in a long run of word
# characters scanned to its end looking for an "@", quadratic in the message (80 KB of "1." took ~25 s).
EMAIL = r"[\w.+-]{1,64}@[\w-]+(?:\.[\w-]+)+"  # the one e-mail pattern: masking, fact checks, lead forms
_EMAIL = re.compile(EMAIL)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_ISO_DATE = r"(?!\d{4}-\d{2}-\d{2}\b)"
_PHONE = re.compile(_ISO_DATE + r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d[\d .-]{5,}\d(?![\w])")

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    r"(?:\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}-\d{1,2}-\d{1,2}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
    r"|\d{1,2}\s+de\s+[a-z]+\s+de\s+\d{4})"
)
# The context word, then up to a few words ("my date of birth is", "born on"), then the date itself (group "date").
_DOB = re.compile(
    r"\b(?:d\.?o\.?b\.?|date of birth|birth ?date|birthday|born|fecha de nacimiento|naci)\b\W{0,3}"
    rf"(?:(?:is|was|on|in|the|:|el|es)\s+){{0,3}}(?P<date>{_DATE})",
    re.IGNORECASE,
)
_STREET = (
    r"street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|circle|cir"
    r"|highway|hwy|parkway|pkwy|calle|avenida"
)
# Words that never name a street ("3 miles down the road", "2 blocks up my street").
_NOT_STREET = (
    r"(?:the|a|an|my|your|our|his|her|down|up|along|across|off|on|in|at|to|of|from|miles?|km|blocks?|minutes?|mins?)"
)
_ADDRESS = re.compile(
    rf"\b\d{{1,6}}(?:\s+(?!{_NOT_STREET}\b)[A-Za-z][\w'.-]*){{1,4}}?\s+(?:{_STREET})\b\.?"
    r"(?:,?\s+(?:apt|apartment|unit|suite|ste|#)\.?\s*[\w-]+)?",
    re.IGNORECASE,
)
_NOT_A_NAME = {"a", "an", "the", "and", "but", "not", "calling", "here", "writing", "i", "im", "my", "on", "in"}
_NAME = re.compile(
    r"\b(?:my name is|my name.s|name:|i am called|me llamo|mi nombre es)\s+"
    r"(?P<name>[^\W\d_][\w'-]*(?:\s+[^\W\d_][\w'-]*)?)",
    re.IGNORECASE,
)


def mask_pii(text: str) -> str:
    """``text`` with e-mail addresses, card numbers, phone numbers, dates of birth, street addresses and given
    names replaced by placeholders ("[email]", "[card]", "[phone]", "[dob]", "[address]", "[name]")."""
    text = _DOB.sub(lambda m: m.group()[: m.start("date") - m.start()] + "[dob]", text)
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub("[card]", text)
    text = _PHONE.sub(_phone_or_keep, text)
    text = _ADDRESS.sub("[address]", text)
    return _NAME.sub(_name_or_keep, text)


def find_pii(text: str) -> set[str]:
    """The e-mail addresses (lower-cased) and card and phone numbers (digits only) in ``text``."""
    return {value for _, _, value in pii_spans(text)}


def pii_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, normalised value) of each e-mail address, card and phone number in ``text``, as masked."""
    found: list[tuple[int, int, str]] = []
    for pattern in (_EMAIL, _CARD, _PHONE):
        for match in pattern.finditer(text):
            if pattern is _PHONE and _phone_or_keep(match) != "[phone]":
                continue
            value = match.group().lower() if pattern is _EMAIL else re.sub(r"\D", "", match.group())
            found.append((match.start(), match.end(), value))
        # Blank what was found (same length, so positions hold) before the next pattern, as mask_pii does.
        text = pattern.sub(lambda m: " " * len(m.group()), text) if pattern is not _PHONE else text
    return sorted(found)


def _phone_or_keep(match: re.Match[str]) -> str:
    text = match.group()
    digits = sum(ch.isdigit() for ch in text)
    if re.fullmatch(r"[\d.]+", text):  # bare digits: a phone number only as a 10-15 digit run
        return "[phone]" if text.isdigit() and 10 <= digits <= 15 else text
    # Prices, years and quantities have fewer digits; phone numbers have 7 to 15.
    return "[phone]" if 7 <= digits <= 15 else text


def _name_or_keep(match: re.Match[str]) -> str:
    words = match.group("name").split()
    kept = []
    for word in words:
        if word.lower().strip("'") in _NOT_A_NAME:
            break
        kept.append(word)
    if not kept:
        return match.group()
    head = match.group()[: match.start("name") - match.start()]
    rest = match.group("name")[len(" ".join(kept)) :]
    return f"{head}[name]{rest}"

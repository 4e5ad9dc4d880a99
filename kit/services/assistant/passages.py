"""The given documents read as passages, for the claim check: sentences, list items under their lead-in line and
heading, table rows; the passage closest to a question; and whether that passage says no to the question's case.

Policies mostly say no in lists ("The warranty does not cover:" then "- pet damage"; a heading "Exclusions"; "Final
sale items:"), so a list item inherits the no of its lead-in or heading. A negation in a condition ("as long as you
have not started your trip"), after a comma (", never in checked baggage") or meaning free ("at no extra cost") says
no only to what it names, and an "only" says no to the cases it leaves out ("within the United States only").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

# a sentence ends after . ! or ? and the citations that close it: never before a "[" (a citation may be coming)
SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s*\[\d{1,2}\])*\s+(?=[^\s\[])|\n\s*\n")
# a full stop that ends these does not end the sentence ("9:00 a.m. to 5:00 p.m.", "e.g. a tent")
ABBREVIATION = re.compile(r"(?:\b(?:[a-z]\.){2,}|\b(?:vs|approx|dr|mr|mrs|ms|mt)\.)$", re.IGNORECASE)
WORD = re.compile(r"\w+")
NEGATION = re.compile(
    r"\b(?:not|no|never|cannot|can't|won't|don't|doesn't|isn't|aren't|except|excluding)\b|n't\b",
    re.IGNORECASE,
)
# a place a case must be in ("you must be physically located in Oregon")
MUST_BE_IN = r"\b[Mm]ust be (?:[a-z]+ ){0,2}in(?= [A-Z])"
ONLY = re.compile(rf"\b[Oo]nly\b|{MUST_BE_IN}")
# a "no" that means free or needless, not forbidden: "at no extra cost", "no appointment needed", "no-show"
NOT_A_NO = re.compile(
    r"\bno[ -](?:(?:extra|additional) )?(?:cost|charge|fee|surcharge|show)s?\b|\bno \w+ (?:needed|required)\b", re.I
)
# a heading or a list's lead-in line ("The warranty does not cover:") that says no for each item under it
SAYS_NO = re.compile(
    rf"{NEGATION.pattern}|\b(?:closed|closures?|exclu\w*|non-returnable|final sale|prohibited)\b", re.I
)
MIXED = re.compile(r"\b(?:can|is|are|do|does|will)\b.*\band\b", re.IGNORECASE)  # "What It Can and Cannot Do"
# a question asking about the no itself ("is pet damage excluded?", "are you closed on Monday?", "is a 75 lb bag over
# the limit?"): "yes" may agree
ASKS_NO = re.compile(
    r"\b(?:exclu\w*|closed|non-(?:refundable|returnable|transferable)|prohibited|banned"
    r"|not (?:covered|allowed|accepted|included|permitted)"
    r"|over (?:the|your|our) (?:limit|allowance)|too (?:heavy|big|large|long))\b",
    re.I,
)
CONDITION = re.compile(r"\b(?:if|as long as|provided|when|unless)\b", re.IGNORECASE)
CLAUSE = re.compile(r"[,;:()\u2014]|\.(?:\s|$)")
LIST_ITEM = re.compile(r"^(?:[-*\u2022]|\d{1,2}[.)])\s+")
STOP = set(
    "a an and are as at be but by can could do does for from has have how i if in is it its me my of on or our "
    "please the their there this to us was we what when where which who why will with would you your".split()
)


Embed = Callable[[list[str]], Any]  # texts -> their unit-length embeddings, one row each


class Given(Protocol):
    """A numbered document the model was given (a SourceRef)."""

    n: int
    source: str
    title: str
    text: str


def sentences(text: str) -> list[str]:
    """The answer cut into sentences, each keeping the citations that close it ("… $389.00 [1].")."""
    parts, start = [], 0
    for m in sentence_ends(text):
        end = m.start() + len(m.group().rstrip())
        parts.append(text[start:end])
        start = m.end()
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def sentence_ends(text: str) -> Iterator[re.Match[str]]:
    """The sentence ends of ``text``, but a full stop closing an abbreviation."""
    for m in SENTENCE_END.finditer(text):
        if not ABBREVIATION.search(text[: m.start()]):
            yield m


@dataclass(frozen=True)
class Passage:
    """A passage of a given document: a sentence, a list item or a table row."""

    n: int  # the document's number
    text: str
    shared: int  # content words shared with the question (the document's heading and the item's lead-in count)
    own: int = 0  # of those, the ones in the passage's own words
    under: str = ""  # the lead-in line or heading that says no for this list item ("What Is Not Covered")

    @property
    def quote(self) -> str:
        """The passage as quoted: a list item saying no by its heading or lead-in, with it."""
        return f"{self.under.rstrip(':')}: {LIST_ITEM.sub('', self.text)}" if self.under else self.text


def contradiction(question: str, given: Sequence[Given], embed: Embed | None = None) -> tuple[int, str] | None:
    """(document number, passage) when a passage plainly says no to a yes/no question's case: the passage closest
    to it in words (see ``says_no_to``); else one saying where the case must be, a place the question is outside
    of; else, with ``embed``, the passage closest in meaning ("bitcoin" for "cryptocurrency"), when it shares two
    content words with the question."""
    if ASKS_NO.search(question):
        return None
    best = closest(question, given)
    if best is not None and best.shared >= 2 and (said := says_no_to(question, best)):
        return said
    return _restricted(question, given) or (_by_meaning(question, given, embed) if embed else None)


def says_no_to(question: str, passage: Passage) -> tuple[int, str] | None:
    """(document number, what to quote) when ``passage`` plainly says no to the question's case: a negation in its
    own words (one in a condition or a trailing ", never in checked baggage" only when the question names that case),
    an "only" whose case the question falls outside of ("within the United States only" for Canada), or, for a list
    item saying nothing itself, its lead-in line or heading ("Not covered:", "Exclusions")."""
    asked, text = content_words(question), NOT_A_NO.sub(" ", passage.text)
    if _says_no(asked, text) or _outside(asked, text):
        return passage.n, passage.text
    if not (NEGATION.search(text) or ONLY.search(text)) and passage.under:  # a list item saying nothing itself
        return passage.n, passage.quote
    return None


def _by_meaning(question: str, given: Sequence[Given], embed: Embed) -> tuple[int, str] | None:
    """``says_no_to`` for the passage whose embedding is closest to the question's, if it shares two content words
    with the question (its heading's and lead-in's counting)."""
    want = content_words(question)
    found = [
        Passage(n, text, len(want & (content_words(text) | context)), len(want & content_words(text)), under)
        for n, text, context, under in passages_of(given)
    ]
    if not found:
        return None
    vectors = np.asarray(embed([question, *(p.text for p in found)]), dtype=np.float32)
    best = found[int(np.argmax(vectors[1:] @ vectors[0]))]
    return says_no_to(question, best) if best.shared >= 2 else None


def _restricted(question: str, given: Sequence[Given]) -> tuple[int, str] | None:
    """A passage other than the closest one that says where the question's case must be, a place the question is
    outside of ("Telehealth Video Visits: you must be physically located in Oregon" for a visit from California):
    it shares two content words with the question, its heading's or lead-in's counting."""
    asked = content_words(question)
    for n, text, context, _ in passages_of(given):
        if re.search(MUST_BE_IN, text) and len(asked & (content_words(text) | context)) >= 2 and _outside(asked, text):
            return n, text
    return None


def _says_no(asked: set[str], text: str) -> bool:
    """A negation of the sentence's own clause; one in a condition ("as long as you have not started") or right
    after a comma (", never in checked baggage") says no only to what follows it, so only when the question names
    that (a bare "No" always counts)."""
    for m in NEGATION.finditer(text):
        bounds = [c.end() for c in CLAUSE.finditer(text, 0, m.start())]
        before = text[bounds[-1] if bounds else 0 : m.start()]
        aside = (bool(bounds) and not before.strip()) or m.group().casefold() in ("except", "excluding")
        if not aside and not CONDITION.search(before):
            return True
        after = content_words(text[m.end() : next((c.start() for c in CLAUSE.finditer(text, m.end())), len(text))])
        if not after or asked & after:
            return True
    return False


def _outside(asked: set[str], text: str) -> bool:
    """An "only" that restricts the sentence to a case the question does not name, while the question names one the
    sentence does not: the case is the words after "only" in its clause (before it, when it ends the clause), its
    capitalised names if it has any ("only available with the Premier plan", "within the United States only")."""
    for m in ONLY.finditer(text):
        begin = max((c.end() for c in CLAUSE.finditer(text, 0, m.start())), default=0)
        stop = next((c.start() for c in CLAUSE.finditer(text, m.end())), len(text))
        case = [w for w in WORD.findall(text[m.end() : stop]) if content_words(w)][:3]
        case = case or [w for w in WORD.findall(text[begin : m.start()]) if content_words(w)][-3:]
        names = [w for w in case if w[0].isupper()] or case
        if names and not asked & content_words(" ".join(names)) and asked - content_words(text):
            return True
    return False


def closest(question: str, given: Sequence[Given]) -> Passage | None:
    """The given passage sharing most content words with the question: a table row whole ("field: value" lines
    joined), a text's single sentence (its heading's words count for it, and a list item's lead-in's too). On a tie,
    the one sharing more in its own words (a heading's count for every passage under it); then the earlier one."""
    want = content_words(question)
    best: Passage | None = None
    for n, text, context, under in passages_of(given):
        own = want & content_words(text)
        passage = Passage(n, text, len(own | (want & context)), len(own), under)
        if best is None or (passage.shared, passage.own) > (best.shared, best.own):
            best = passage
    return best


def passages_of(given: Sequence[Given]) -> Iterator[tuple[int, str, set[str], str]]:
    """(document number, passage, the words that count for it besides its own, what says no for it) for every
    passage of the given documents: a table row whole ("field: value" lines joined), else each sentence, with its
    heading's words and, for a list item, its lead-in's."""
    for g in given:
        lines = [ln.strip() for ln in g.text.splitlines() if ln.strip()]
        if _is_row(lines):
            yield g.n, "; ".join(lines), set(), ""
            continue
        title = lines[0] if len(lines) > 1 else ""
        heading = content_words(title)
        for text, lead, under in _passages(lines[1:] or lines, title):
            yield g.n, text, lead | heading, under


def _passages(lines: list[str], heading: str) -> Iterator[tuple[str, set[str], str]]:
    """(sentence, its lead-in's words, what says no for it) for each sentence of a text; a list item stands under the
    lead-in line before it (one ending with ":") and under the heading, and either may say no for it."""
    section = heading.split(" > ")[-1]
    heading_no = section if _heads_no(section) else ""
    lead = ""
    for line in lines:
        item = LIST_ITEM.match(line) is not None
        if not item:
            lead = line if line.endswith(":") else ""
        under = (lead if _heads_no(lead) else heading_no) if item else ""
        for sentence in sentences(line):
            yield sentence.strip(), content_words(lead) if item else set(), under


def _heads_no(line: str) -> bool:
    """A heading or lead-in that says no ("Items We Cannot Accept", "Exclusions:"), not one saying both ("What It Can
    and Cannot Do") or one only naming a no-show."""
    return SAYS_NO.search(NOT_A_NO.sub(" ", line)) is not None and not MIXED.search(line)


def _is_row(lines: list[str]) -> bool:
    """A table row's chunk: a title line, then 'field: value' lines."""
    return len(lines) > 1 and all(re.match(r"[\w ]{1,40}: ", ln) for ln in lines[1:])


def content_words(text: str) -> set[str]:
    """The text's content words, roughly stemmed ("returned" and "returns" are "return", "shipping" is "ship")."""
    return {_stem(w) for w in WORD.findall(text.casefold()) if w not in STOP and len(w) > 2}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    if len(word) > 3 and word[-1] == word[-2]:
        return word[:-1]
    return word[:-1] if len(word) > 4 and word.endswith("e") else word  # "place" as "placed", "service" as "services"

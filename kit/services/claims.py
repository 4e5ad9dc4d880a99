"""The claim check: what an answer may keep of what the model wrote, sentence by sentence, after generation.

The fact lock (kit/components/fact_lock.py) keeps figures to those of the prompt while a local model writes; an
OpenAI-compatible server's logits are out of reach, and a figure copied from the wrong document is still wrong.
So every answer, from any engine, is read again, one sentence at a time, before the customer sees it:
- a sentence's facts (numbers, prices, dates, ids, phones, e-mails, URLs) must occur in a document it cites, or
  in any document given when it cites none (or in the question, the conversation or the public contact): an
  unsupported sentence is dropped;
- junk ends the answer: a sentence that writes another turn, glued or control tokens, another script, or one the
  answer already said, and everything after it, is cut (run-on text after the answer);
- an answer that opens with "yes" to a yes/no question when the passage closest to the question plainly says the
  opposite ("only within", "not", "can't", "no") is not sent as it is;
- a kept sentence that cites nothing gets the citation of the document that holds it: the given document holding
  all of its facts that shares most content words with it (at least ``MIN_ATTRIBUTED``), as "… $59.00 [2]."
  (small instruct models often state a document's facts without its number).
When nothing trustworthy is left, the answer is the passage itself: the retrieved sentence (or table row) closest to
the question, quoted and cited ("From our Shipping Policy: “…” [2]"; ``fallback``). Every decision is kept with the
reply, so the eval's per-answer results say why a sentence was dropped.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kit.services.facts import unsupported
from kit.services.prompt import CITE

logger = logging.getLogger(__name__)

# a sentence ends after . ! or ? and the citations that close it: never before a "[" (a citation may be coming)
SENTENCE_END = re.compile(r"(?<=[.!?])(?:\s*\[\d{1,2}\])*\s+(?=[^\s\[])|\n\s*\n")
# a full stop that ends these does not end the sentence ("9:00 a.m. to 5:00 p.m.", "e.g. a tent")
ABBREVIATION = re.compile(r"(?:\b(?:[a-z]\.){2,}|\b(?:vs|approx|dr|mr|mrs|ms|mt)\.)$", re.IGNORECASE)
URL = re.compile(r"\bhttps?://[^\s)\]>]+|\bwww\.[^\s)\]>]+", re.IGNORECASE)
ROLE_MARK = re.compile(r"(?:^|\n)\s*\**(?:user|customer|assistant|question|answer|q|a)\**\s*:", re.IGNORECASE)
CONTROL_TOKEN = re.compile(r"<\|?/?[a-z_]+\d*\|?>|<unused\d+>", re.IGNORECASE)
GLUED = re.compile(r"\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z]+[A-Z][a-z]+\w*\b|\][A-Za-z]{2,}")
WORD = re.compile(r"\w+")
REPEAT_WORDS = 8  # a run of this many words said twice is a loop
MIN_ATTRIBUTED = 2  # content words an uncited sentence must share with a document to get its citation
MIN_SHARED = 2  # content words a passage must share with the question to be quoted as the answer
YES = {"yes", "yep", "yeah", "sure", "absolutely", "certainly", "definitely", "correct"}
NO = {"no", "nope", "unfortunately", "sorry", "not", "nah"}
YES_NO_QUESTION = re.compile(
    r"^\s*(?:can|could|do|does|did|is|are|was|were|will|would|may|might|should|shall|has|have|had)\b", re.IGNORECASE
)
NEGATION = re.compile(
    r"\b(?:not|no|never|cannot|can't|won't|don't|doesn't|isn't|aren't|except|excluding)\b|n't\b",
    re.IGNORECASE,
)
ONLY = re.compile(r"\bonly\b", re.IGNORECASE)
# a "no" that means free or needless, not forbidden: "at no extra cost", "no appointment needed", "no-show"
NOT_A_NO = re.compile(
    r"\bno[ -](?:(?:extra|additional) )?(?:cost|charge|fee|surcharge|show)s?\b|\bno \w+ (?:needed|required)\b", re.I
)
# a heading or a list's lead-in line ("The warranty does not cover:") that says no for each item under it
SAYS_NO = re.compile(
    rf"{NEGATION.pattern}|\b(?:closed|closures?|exclu\w*|non-returnable|non-refundable|final sale|prohibited)\b", re.I
)
MIXED = re.compile(r"\b(?:can|is|are|do|does|will)\b.*\band\b", re.IGNORECASE)  # "What It Can and Cannot Do"
# a question asking about the no itself ("is pet damage excluded?", "are you closed on Monday?"): "yes" may agree
ASKS_NO = re.compile(
    r"\b(?:exclu\w*|closed|non-\w+|prohibited|banned|not (?:covered|allowed|accepted|included|permitted))\b", re.I
)
CONDITION = re.compile(r"\b(?:if|as long as|provided|when|unless)\b", re.IGNORECASE)
CLAUSE = re.compile(r"[,;:()\u2014]|\.(?:\s|$)")
LIST_ITEM = re.compile(r"^(?:[-*\u2022]|\d{1,2}[.)])\s+")
STOP = set(
    "a an and are as at be but by can could do does for from has have how i if in is it its me my of on or our "
    "please the their there this to us was we what when where which who why will with would you your".split()
)


class Given(Protocol):
    """A numbered document the model was given (a SourceRef)."""

    n: int
    source: str
    title: str
    text: str


@dataclass
class Checked:
    """What is left of an answer, and why each sentence went or stayed."""

    text: str
    decisions: list[str] = field(default_factory=list)
    fallback: bool = False  # the answer is a quoted passage, not the model's words


def sentences(text: str) -> list[str]:
    """The answer cut into sentences, each keeping the citations that close it ("… $389.00 [1].")."""
    parts, start = [], 0
    for m in _ends(text):
        end = m.start() + len(m.group().rstrip())
        parts.append(text[start:end])
        start = m.end()
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def junk(text: str, context: str) -> list[str]:
    """What in a text is not an answer: another turn, control or glued tokens, another script, a loop."""
    found: list[str] = []
    if ROLE_MARK.search(text):
        found.append("run-on: writes another turn")
    found += [f"control token {t}" for t in dict.fromkeys(CONTROL_TOKEN.findall(text))]
    glued = [w for w in dict.fromkeys(GLUED.findall(text)) if w.lstrip("]") not in context]
    found += [f"glued token {w}" for w in glued]
    foreign = sorted({c for c in text if c.isalpha() and not _latin(c) and c not in context})
    if foreign:
        found.append("another script: " + "".join(foreign[:8]))
    words = WORD.findall(text.casefold())
    runs = [tuple(words[i : i + REPEAT_WORDS]) for i in range(len(words) - REPEAT_WORDS + 1)]
    if len(runs) != len(set(runs)):
        found.append("run-on: repeats itself")
    return found


def _latin(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN")


def invented(text: str, context: str) -> list[str]:
    """Numbers, prices, dates, ids, phones, e-mails and URLs in ``text`` that ``context`` does not hold."""
    urls = [u.rstrip(".,;:") for u in URL.findall(text)]
    missing = [u for u in urls if u.casefold() not in context.casefold()]
    return missing + unsupported(URL.sub(" ", text), context)


def polarity(text: str) -> str | None:
    """'yes' or 'no' when a text opens with one, else None."""
    words = WORD.findall(text.casefold()[:80])
    if not words:
        return None
    if words[0] in YES or words[:2] == ["of", "course"]:
        return "yes"
    if words[0] in NO or (words[:2] in (["i", "m"], ["i", "am"]) and "afraid" in words[:4]):
        return "no"
    return None


class ClaimCheck:
    """The check of one answer, fed one sentence at a time as the model writes (``feed``), closed by ``finish``."""

    def __init__(self, question: str, given: Sequence[Given], known: str = "") -> None:
        self.question, self.given = question, given
        self.asked = f"{question}\n{known}"
        self.everything = self.asked + "\n" + "\n".join(g.text for g in given)
        self.decisions: list[str] = []
        self.kept: list[str] = []
        self.said: set[str] = set()
        self.done = False  # junk was found, or a contradicted "yes": nothing more of the model's is sent
        self.fallback: Checked | None = None

    def feed(self, sentence: str) -> str:
        """What of ``sentence`` may be sent ("" when nothing); sets ``done`` when the rest of the answer must go."""
        if self.done or not sentence.strip():
            return ""
        if (
            not self.kept
            and not self.decisions
            and polarity(sentence) == "yes"
            and YES_NO_QUESTION.match(self.question)
        ):
            against = contradiction(self.question, self.given)
            if against:
                self._decide(f"not sent: opens with yes, but [{against[0]}] says \u201c{against[1]}\u201d")
                self.done = True
                return ""
        rubbish = junk(sentence, self.everything)
        again = " ".join(WORD.findall(sentence.casefold()))
        if rubbish or (again and again in self.said):
            self._decide(f"cut from \u201c{_short(sentence)}\u201d on: {', '.join(rubbish) or 'said again'}")
            self.done = True
            return ""
        self.said.add(again)
        cited = [g for g in self.given if g.n in {int(n) for n in CITE.findall(sentence)}]
        missing = invented(sentence, "\n".join([self.asked, *(g.text for g in (cited or self.given))]))
        if missing:
            where = "the documents it cites" if cited else "the documents given"
            self._decide(f"dropped \u201c{_short(sentence)}\u201d: {', '.join(missing)} not in {where}")
            return ""
        if not cited:
            sentence = self._attributed(sentence)
        self.kept.append(sentence)
        return sentence

    def _attributed(self, sentence: str) -> str:
        """``sentence`` citing the given document that holds it, when one plainly does."""
        n = attribute(sentence, self.given, self.asked)
        if n is None:
            return sentence
        self._decide(f"cited [{n}] for \u201c{_short(sentence)}\u201d: that document holds its facts and words")
        body = sentence.rstrip()
        end = len(body.rstrip(".!?:;"))
        return f"{body[:end]} [{n}]{body[end:]}{sentence[len(body) :]}"

    def _decide(self, decision: str) -> None:
        self.decisions.append(decision)
        logger.info("claim check: %s", decision)

    def finish(self) -> Checked:
        """The answer as sent: the kept sentences, or the passage itself when nothing trustworthy is left."""
        text = "".join(self.kept).strip()
        if not text or not re.search(r"\w", CITE.sub("", text)):
            return _fallback(self.question, self.given, self.decisions)
        return Checked(text, self.decisions)


def check(answer: str, question: str, given: Sequence[Given], known: str = "") -> Checked:
    """The whole answer through the claim check at once (what streaming through ``ClaimCheck`` also gives)."""
    claim = ClaimCheck(question, given, known)
    for sentence in sentences(answer):
        claim.feed(sentence + " ")
    return claim.finish()


def streamed(pieces: Iterator[str], claim: ClaimCheck) -> Iterator[str]:
    """The model's pieces, released a whole sentence at a time once the claim check let it through; the fallback
    passage at the end when nothing was; the model is stopped as soon as the rest of its answer must go."""
    buffer, sent = "", False
    try:
        for piece in pieces:
            buffer += piece
            while (cut := _first_end(buffer)) is not None:
                sentence, buffer = buffer[:cut], buffer[cut:]
                out = claim.feed(sentence)
                if out:
                    yield out
                    sent = True
            if buffer and not claim.done and junk(buffer, claim.everything):  # run-on: stop the model now
                claim.feed(buffer)
                buffer = ""
            if claim.done:
                break
        if buffer and not claim.done:
            out = claim.feed(buffer)
            if out:
                yield out
                sent = True
    finally:
        if isinstance(pieces, Generator):
            pieces.close()
    result = claim.finish()
    if not sent:
        yield result.text
    claim.fallback = result if result.fallback else None


def _first_end(text: str) -> int | None:
    """Where the first whole sentence of ``text`` ends (with the space after it), if one is complete."""
    m = next(_ends(text), None)
    return m.end() if m else None


def _ends(text: str) -> Iterator[re.Match[str]]:
    """The sentence ends of ``text``, but a full stop closing an abbreviation."""
    for m in SENTENCE_END.finditer(text):
        if not ABBREVIATION.search(text[: m.start()]):
            yield m


def attribute(sentence: str, given: Sequence[Given], asked: str = "") -> int | None:
    """The number of the given document that holds ``sentence``: of those holding all its facts (with ``asked``,
    the question and conversation), the one sharing most content words with it, at least ``MIN_ATTRIBUTED``; the
    earlier document on a tie; None when none does."""
    words = _content(CITE.sub("", sentence))
    best: tuple[int, int] | None = None
    for g in given:
        if invented(sentence, f"{asked}\n{g.text}"):
            continue
        shared = len(words & _content(g.text))
        if shared >= MIN_ATTRIBUTED and (best is None or shared > best[1]):
            best = (g.n, shared)
    return best[0] if best else None


@dataclass(frozen=True)
class Passage:
    """A passage of a given document: a sentence, a list item or a table row."""

    n: int  # the document's number
    text: str
    shared: int  # content words shared with the question (the document's heading and the item's lead-in count)
    under: str = ""  # the lead-in line or heading that says no for this list item ("What Is Not Covered")

    @property
    def quote(self) -> str:
        """The passage as quoted: a list item saying no by its heading or lead-in, with it."""
        return f"{self.under.rstrip(':')}: {LIST_ITEM.sub('', self.text)}" if self.under else self.text


def contradiction(question: str, given: Sequence[Given]) -> tuple[int, str] | None:
    """The passage closest to a yes/no question, when it plainly says no to the question's case: a negation in its
    own words (one in a condition or a trailing ", never in checked baggage" only when the question names that case),
    an "only" whose case the question falls outside of ("within the United States only" for Canada), or, for a list
    item saying nothing itself, its lead-in line or heading ("Not covered:", "Exclusions")."""
    if ASKS_NO.search(question):
        return None
    best = _closest(question, given)
    if best is None or best.shared < 2:
        return None
    asked, text = _content(question), NOT_A_NO.sub(" ", best.text)
    if _says_no(asked, text) or _outside(asked, text):
        return best.n, best.text
    if NEGATION.search(text) or ONLY.search(text) or not best.under:  # a list item with words of its own decides
        return None
    return best.n, best.quote


def _says_no(asked: set[str], text: str) -> bool:
    """A negation of the sentence's own clause; one in a condition ("as long as you have not started") or right
    after a comma (", never in checked baggage") says no only to what follows it, so only when the question names
    that (a bare "No" always counts)."""
    for m in NEGATION.finditer(text):
        bounds = [c.end() for c in CLAUSE.finditer(text, 0, m.start())]
        before = text[bounds[-1] if bounds else 0 : m.start()]
        aside = (bounds and not before.strip()) or m.group().casefold() in ("except", "excluding")
        if not aside and not CONDITION.search(before):
            return True
        after = _content(text[m.end() : next((c.start() for c in CLAUSE.finditer(text, m.end())), len(text))])
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
        case = [w for w in WORD.findall(text[m.end() : stop]) if _content(w)][:3]
        case = case or [w for w in WORD.findall(text[begin : m.start()]) if _content(w)][-3:]
        names = [w for w in case if w[0].isupper()] or case
        if names and not asked & _content(" ".join(names)) and asked - _content(text):
            return True
    return False


def _closest(question: str, given: Sequence[Given]) -> Passage | None:
    """The given passage sharing most content words with the question (the earlier one on a tie): a table row whole
    ("field: value" lines joined), a text's single sentence (its heading's words count for it, and a list item's
    lead-in's too)."""
    want = _content(question)
    best: Passage | None = None
    for g in given:
        lines = [ln.strip() for ln in g.text.splitlines() if ln.strip()]
        if _is_row(lines):
            found = [("; ".join(lines), set(), "")]
        else:
            heading = _content(lines[0]) if len(lines) > 1 else set()
            found = [(text, lead | heading, under) for text, lead, under in _passages(lines[1:] or lines, lines[0])]
        for text, context, under in found:
            shared = len(want & (_content(text) | context))
            if best is None or shared > best.shared:
                best = Passage(g.n, text, shared, under)
    return best


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
            yield sentence.strip(), _content(lead) if item else set(), under


def _heads_no(line: str) -> bool:
    """A heading or lead-in that says no ("Items We Cannot Accept", "Exclusions:"), not one saying both ("What It Can
    and Cannot Do") or one only naming a no-show."""
    return SAYS_NO.search(NOT_A_NO.sub(" ", line)) is not None and not MIXED.search(line)


def _is_row(lines: list[str]) -> bool:
    """A table row's chunk: a title line, then 'field: value' lines."""
    return len(lines) > 1 and all(re.match(r"[\w ]{1,40}: ", ln) for ln in lines[1:])


def _content(text: str) -> set[str]:
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


def _fallback(question: str, given: Sequence[Given], decisions: list[str]) -> Checked:
    best = _closest(question, given)
    if best is None or best.shared < min(MIN_SHARED, len(_content(question))):
        decisions.append("nothing left to send, and no passage is close enough to the question to quote")
        return Checked("I'm sorry, I can't find that in our documents.", decisions, fallback=True)
    n, passage = best.n, best.quote
    doc = next(g for g in given if g.n == n)
    name = doc.title.split(" > ")[0] if doc.source.endswith((".md", ".txt", ".html", ".htm")) else ""
    where = f"our {name or Path(doc.source).stem.replace('-', ' ').replace('_', ' ')}"
    decisions.append(f"answered with the passage from [{n}]")
    return Checked(f"From {where}: \u201c{_short(passage, 400)}\u201d [{n}]", decisions, fallback=True)


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"

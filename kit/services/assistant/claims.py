"""The claim check: what an answer may keep of what the model wrote, sentence by sentence, after generation.

The fact lock (kit/components/fact_lock.py) keeps figures to those of the prompt while a local model writes; an
OpenAI-compatible server's logits are out of reach, and a figure copied from the wrong document is still wrong.
So every answer, from any engine, is read again, one sentence at a time, before the customer sees it:
- a sentence's facts (numbers, prices, dates, ids, phones, e-mails, URLs) must occur in a document it cites, or
  in any document given when it cites none (or in the question, the conversation or the public contact): an
  unsupported sentence is dropped;
- junk ends the answer: a sentence that writes another turn, glued or control tokens, another script, or one the
  answer already said, and everything after it, is cut (run-on text after the answer);
- an answer that opens with "yes" to a yes/no question when the passage closest to the question plainly says no to
  the question's case is not sent as it is (kit/services/assistant/passages.py: a negation of its own, the lead-in line
  or heading of the exclusion list it stands in, an "only" the question's case falls outside of);
- a kept sentence that cites nothing gets the citation of the document that holds it: the given document holding
  all of its facts that shares most content words with it (at least ``MIN_ATTRIBUTED``), as "… $59.00 [2]."
  (small instruct models often state a document's facts without its number).
When nothing trustworthy is left, the answer is the passage itself: the retrieved sentence (or table row) closest to
the question, quoted and cited ("From our Shipping Policy: “…” [2]"; ``fallback``; a list item saying no by its
heading or lead-in is quoted with it). Every decision is kept with the
reply, so the eval's per-answer results say why a sentence was dropped.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kit.services.assistant.facts import unsupported
from kit.services.assistant.limits import over_limit
from kit.services.assistant.passages import (
    ASKS_NO,
    WORD,
    Embed,
    Given,
    closest,
    content_words,
    contradiction,
    sentence_ends,
    sentences,
)
from kit.services.assistant.prompt import CITE

logger = logging.getLogger(__name__)

URL = re.compile(r"\bhttps?://[^\s)\]>]+|\bwww\.[^\s)\]>]+", re.IGNORECASE)
ROLE_MARK = re.compile(r"(?:^|\n)\s*\**(?:user|customer|assistant|question|answer|q|a)\**\s*:", re.IGNORECASE)
CONTROL_TOKEN = re.compile(r"<\|?/?[a-z_]+\d*\|?>|<unused\d+>", re.IGNORECASE)
GLUED = re.compile(r"\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z]+[A-Z][a-z]+\w*\b|\][A-Za-z]{2,}")
REPEAT_WORDS = 8  # a run of this many words said twice is a loop
MIN_ATTRIBUTED = 2  # content words an uncited sentence must share with a document to get its citation
MIN_SHARED = 2  # content words a passage must share with the question to be quoted as the answer
YES = {"yes", "yep", "yeah", "sure", "absolutely", "certainly", "definitely", "correct"}
NO = {"no", "nope", "unfortunately", "sorry", "not", "nah"}
YES_NO_QUESTION = re.compile(
    r"^\s*(?:can|could|do|does|did|is|are|was|were|will|would|may|might|should|shall|has|have|had)\b", re.IGNORECASE
)


@dataclass
class Checked:
    """What is left of an answer, and why each sentence went or stayed."""

    text: str
    decisions: list[str] = field(default_factory=list)
    fallback: bool = False  # the answer is a quoted passage, not the model's words


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

    def __init__(self, question: str, given: Sequence[Given], known: str = "", embed: Embed | None = None) -> None:
        self.question, self.given, self.embed = question, given, embed
        self.asked = f"{question}\n{known}"
        self.everything = self.asked + "\n" + "\n".join(g.text for g in given)
        self.decisions: list[str] = []
        self.kept: list[str] = []
        self.said: set[str] = set()
        self.done = False  # junk was found, or a contradicted "yes": nothing more of the model's is sent
        self.fallback: Checked | None = None
        self.against: tuple[int, str] | None = None  # the passage that said no to an opening "yes"

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
            against = refuted(self.question, self.given, self.embed)
            if against:
                self._decide(f"not sent: opens with yes, but [{against[0]}] says \u201c{against[1]}\u201d")
                self.done, self.against = True, against
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
            return _fallback(self.question, self.given, self.decisions, self.against)
        return Checked(text, self.decisions)


def refuted(question: str, given: Sequence[Given], embed: Embed | None = None) -> tuple[int, str] | None:
    """(document number, passage) when a given passage answers the yes/no ``question`` no: a passage close to it says
    no to its case (kit/services/assistant/passages.py; ``embed`` finds the closest in meaning too), or a passage
    sets a limit its figure goes past (kit/services/assistant/limits.py)."""
    if ASKS_NO.search(question):  # "is a 75 lb bag over the limit?": a "yes" agrees with the limit
        return None
    return contradiction(question, given, embed) or over_limit(question, given)


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
    m = next(sentence_ends(text), None)
    return m.end() if m else None


def attribute(sentence: str, given: Sequence[Given], asked: str = "") -> int | None:
    """The number of the given document that holds ``sentence``: of those holding all its facts (with ``asked``,
    the question and conversation), the one sharing most content words with it, at least ``MIN_ATTRIBUTED``; the
    earlier document on a tie; None when none does."""
    words = content_words(CITE.sub("", sentence))
    best: tuple[int, int] | None = None
    for g in given:
        if invented(sentence, f"{asked}\n{g.text}"):
            continue
        shared = len(words & content_words(g.text))
        if shared >= MIN_ATTRIBUTED and (best is None or shared > best[1]):
            best = (g.n, shared)
    return best[0] if best else None


def _fallback(
    question: str, given: Sequence[Given], decisions: list[str], against: tuple[int, str] | None = None
) -> Checked:
    """The passage that said no to the answer's "yes" (``against``), else the one closest to the question, quoted."""
    best = closest(question, given)
    if against is None and (best is None or best.shared < min(MIN_SHARED, len(content_words(question)))):
        decisions.append("nothing left to send, and no passage is close enough to the question to quote")
        return Checked("I'm sorry, I can't find that in our documents.", decisions, fallback=True)
    n, passage = against or (best.n, best.quote)
    doc = next(g for g in given if g.n == n)
    name = doc.title.split(" > ")[0] if doc.source.endswith((".md", ".txt", ".html", ".htm")) else ""
    where = f"our {name or Path(doc.source).stem.replace('-', ' ').replace('_', ' ')}"
    decisions.append(f"answered with the passage from [{n}]")
    return Checked(f"From {where}: \u201c{_short(passage, 400)}\u201d [{n}]", decisions, fallback=True)


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"

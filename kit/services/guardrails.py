"""Guardrails applied around the model, from domain.yaml only.

Order of checks for each question, before the model sees it:
1. rules with patterns (e.g. an emergency): their fixed response, before anything else;
2. hand-off triggers: the hand-off message with the contact filled in;
3. off-topic: the domain's refusal, decided from retrieval evidence (how close the question is to
   the best retrieved chunk and to the scope's topics) against its closeness to the scope's
   out-of-scope examples.
Personal data (e-mails, phone numbers, card numbers) is masked before anything is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from kit.chunk import Chunk
from kit.settings import Contact, DomainSpec

Kind = Literal["answer", "refuse", "handoff", "rule"]
Embed = Callable[[list[str]], np.ndarray]

# Cosine similarities of all-MiniLM-L6-v2 (see bench/guardrails figures in the report): below MIN_IN_SCOPE
# nothing in the domain is about the question; an out-of-scope example closer than the best in-scope
# evidence by more than MARGIN decides a refusal.
MIN_IN_SCOPE = 0.25
MARGIN = 0.02


@dataclass(frozen=True)
class Verdict:
    """What the guardrails decided: answer with the model, or a fixed message of a kind."""

    kind: Kind
    message: str = ""
    reason: str = ""  # the rule or trigger id, or the evidence for a refusal


ANSWER = Verdict("answer")


def contact_text(contact: Contact) -> str:
    """The contact as one line: 'Team, e-mail …, phone … (hours)'."""
    parts = [contact.name]
    parts += [f"e-mail {contact.email}"] if contact.email else []
    parts += [f"phone {contact.phone}"] if contact.phone else []
    text = ", ".join(parts)
    return f"{text} ({contact.hours})" if contact.hours else text


class Guardrails:
    """A domain's rules, hand-off triggers and scope, compiled once."""

    def __init__(self, spec: DomainSpec, embed: Embed | None = None) -> None:
        self.spec = spec
        self.rules = [(r.id, _compile(r.patterns), r.response or "") for r in spec.rules if r.patterns]
        self.triggers = [(t.id, _compile(t.patterns)) for t in spec.handoff.triggers]
        self.handoff_message = spec.handoff.message.replace("{contact}", contact_text(spec.handoff.contact))
        self.embed = embed
        self._scope_vectors: tuple[np.ndarray, np.ndarray] | None = None

    def screen(self, question: str) -> Verdict:
        """Rules first, then hand-off triggers; ANSWER when neither fires."""
        for rule_id, pattern, response in self.rules:
            if pattern.search(question):
                return Verdict("rule", response, rule_id)
        for trigger_id, pattern in self.triggers:
            if pattern.search(question):
                return Verdict("handoff", self.handoff_message, trigger_id)
        return ANSWER

    def scope(self, question: str, chunks: Sequence[Chunk]) -> Verdict:
        """The refusal when the evidence says the question is off-topic; ANSWER otherwise."""
        if self.embed is None:
            return ANSWER if chunks else self.refusal("nothing retrieved")
        inside, outside = self.scope_scores(question, chunks)
        if inside < MIN_IN_SCOPE or outside > inside + MARGIN:
            return self.refusal(f"in-scope {inside:.2f}, out-of-scope {outside:.2f}")
        return ANSWER

    def looks_out_of_scope(self, question: str, chunks: Sequence[Chunk]) -> bool:
        """Closer to an out-of-scope example than to the domain (not merely short of evidence)."""
        if self.embed is None:
            return False
        inside, outside = self.scope_scores(question, chunks)
        return outside > inside + MARGIN

    def check(self, question: str, chunks: Sequence[Chunk]) -> Verdict:
        """Every guard in order: rules, hand-off, scope."""
        verdict = self.screen(question)
        return verdict if verdict.kind != "answer" else self.scope(question, chunks)

    def refusal(self, reason: str) -> Verdict:
        return Verdict("refuse", self.spec.scope.refusal_message, reason)

    def scope_scores(self, question: str, chunks: Sequence[Chunk]) -> tuple[float, float]:
        """(closeness to the domain, closeness to the out-of-scope examples), as cosine similarities."""
        assert self.embed is not None
        topics, examples = self._scope()
        q = self.embed([question])[0]
        retrieved = [c.similarity for c in chunks if c.similarity is not None]
        inside = max([float(np.max(topics @ q)), *retrieved])
        outside = float(np.max(examples @ q)) if len(examples) else -1.0
        return inside, outside

    def _scope(self) -> tuple[np.ndarray, np.ndarray]:
        if self._scope_vectors is None:
            assert self.embed is not None
            scope = self.spec.scope
            topics = self.embed([scope.summary, *scope.topics])
            examples = self.embed(list(scope.out_of_scope)) if scope.out_of_scope else np.zeros((0, topics.shape[1]))
            self._scope_vectors = (topics, examples)
        return self._scope_vectors


def _compile(patterns: Sequence[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


# Personal data in stored logs. Cards before phones: a card number would also look like a phone number.
# The local part is bounded (64 characters, as in RFC 5321): unbounded, every start in a long run of word
# characters scanned to its end looking for an "@", quadratic in the message (80 KB of "1." took ~25 s).
_EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_ISO_DATE = r"(?!\d{4}-\d{2}-\d{2}\b)"
_PHONE = re.compile(_ISO_DATE + r"(?<![\w.])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d[\d .-]{5,}\d(?![\w])")


def mask_pii(text: str) -> str:
    """``text`` with e-mail addresses, card numbers and phone numbers replaced by placeholders."""
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub("[card]", text)
    return _PHONE.sub(_phone_or_keep, text)


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

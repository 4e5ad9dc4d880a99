"""Guardrails applied around the model, from domain.yaml only.

Order of checks for each question, before the model sees it:
1. rules with patterns or examples (e.g. an emergency): their fixed response, before anything else;
2. hand-off triggers: the hand-off message with the contact filled in;
3. off-topic: the domain's refusal, decided from retrieval evidence (how close the question is to
   the best retrieved chunk and to the scope's topics) against its closeness to the scope's
   out-of-scope examples.
A rule or trigger fires when one of its patterns matches the message (as written, and with accents and typographic
quotes folded), or when the message, or one of its sentences, is at least the rule's `threshold` close (cosine
similarity of the query embedder) to one of its `examples`: rephrasings, typos and other languages that no pattern
foresaw. A learned check (screening.learned; kit/services/safety/learned.py) fires by its classifier's score
instead of its examples, and its classifier may veto a match of its patterns (``Classifier.veto``). Rules and
triggers are tried in their order in domain.yaml; the first that fires decides.
A hand-off that uses handoff.message, outside the contact's opening hours (kit/services/assistant/hours.py), says when
the team is back and offers the lead form instead; rules, and triggers with their own message, never change with the
hours. Personal data is masked before anything is stored (kit/services/safety/pii.py).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from kit.chunk import Chunk
from kit.services.assistant.hours import Hours
from kit.services.safety.classifier import Classifier
from kit.services.safety.negation import READING_WORDS, affirmed, denied, denied_span, pattern_words
from kit.services.safety.respelling import known_words, respelled
from kit.settings import Contact, DomainSpec, embedding_name

Kind = Literal["answer", "refuse", "handoff", "rule"]
Embed = Callable[[list[str]], np.ndarray]
Clock = Callable[[], datetime]
Vectors = np.ndarray | None

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
    lead_form: bool = False  # a hand-off outside opening hours: the customer may leave their details


ANSWER = Verdict("answer")
EMBED_BATCH = 32  # texts per embedding call: small batches stay on the numpy BERT (no torch while serving)
MAX_PIECES = 8  # sentences of one message compared with the examples, besides the whole message


@dataclass(frozen=True)
class Check:
    """One rule or hand-off trigger as the guardrails run it."""

    kind: Kind  # "rule" or "handoff"
    id: str
    pattern: re.Pattern[str] | None
    examples: tuple[str, ...]
    threshold: float
    message: str
    hours_apply: bool = False  # a hand-off to the contact (handoff.message): outside the hours it changes
    classifier: Classifier | None = None  # a learned check (screening.learned): it decides instead of the examples

    @property
    def cutoff(self) -> float:
        """The score from which it fires: the classifier's score threshold, else the example similarity."""
        return self.threshold if self.classifier is None else self.classifier.threshold


@dataclass(frozen=True)
class Score:
    """How close a message came to firing a check: its pattern matched (and its learned check, if any, did not veto
    the match), or its best example similarity (a learned check's classifier score, with no example)."""

    check: Check
    matched: bool
    similarity: float
    example: str
    vetoed: bool = False  # a pattern matched, but the learned check scored the message below its veto

    @property
    def fires(self) -> bool:
        return self.matched or self.similarity >= self.check.cutoff


def calibration_mismatch(spec: DomainSpec) -> str | None:
    """What is wrong when the rules' and triggers' thresholds were calibrated on another embedding model than the
    one the guardrails embed with (retrieval.embedding_model) and some of them compare examples; None when they
    match. Under another model the same cosine means something else: MiniLM's thresholds under e5-small fired a
    template's emergency rule on every ordinary message."""
    retrieval = spec.retrieval
    screened = [*spec.rules, *spec.handoff.triggers]
    if not any(s.examples for s in screened):
        return None
    used, calibrated = embedding_name(retrieval.embedding_model), embedding_name(retrieval.thresholds_calibrated_on)
    if used == calibrated:
        return None
    return f"the rules' thresholds were calibrated on {calibrated}, but the guardrails embed with {used}"


def recalibration_hint(spec: DomainSpec, domain_dir: str) -> str:
    """What to do about ``calibration_mismatch``."""
    used = spec.retrieval.embedding_model
    return (
        f"run `kit eval {domain_dir} --safety --calibrate 0.002`, set each rule's and trigger's threshold to the one "
        f"it prints and retrieval.thresholds_calibrated_on: {used}, or set retrieval.embedding_model back"
    )


def contact_text(contact: Contact) -> str:
    """The contact as one line: 'Team, e-mail …, phone … (hours)'."""
    parts = [contact.name]
    parts += [f"e-mail {contact.email}"] if contact.email else []
    parts += [f"phone {contact.phone}"] if contact.phone else []
    text = ", ".join(parts)
    return f"{text} ({contact.hours})" if contact.hours else text


class Guardrails:
    """A domain's rules, hand-off triggers and scope, compiled once."""

    def __init__(
        self, spec: DomainSpec, embed: Embed | None = None, clock: Clock | None = None, hours: bool = True
    ) -> None:
        """``clock`` gives the time opening hours are read at (now, by default); ``hours=False`` hands off as if the
        team were always in (synthetic training data: the runtime, not the model, says when the team is back)."""
        self.spec = spec
        opening = spec.handoff.contact.opening_hours
        self.hours = Hours(opening) if opening is not None and hours else None
        self.clock = clock or (lambda: datetime.now(UTC))
        self.handoff_message = spec.handoff.message.replace("{contact}", contact_text(spec.handoff.contact))
        self.checks = [
            Check("rule", r.id, _compile(r.patterns), tuple(r.examples), r.threshold, r.response or "")
            for r in spec.rules
            if r.patterns or r.examples
        ] + [
            Check(
                "handoff",
                t.id,
                _compile(t.patterns),
                tuple(t.examples),
                t.threshold,
                self._handoff_text(t.message),
                hours_apply=t.message is None,
            )
            for t in spec.handoff.triggers
        ]
        self.embed = embed
        self.learned_embed: Embed | None = None  # the learned checks' own encoder (screening.encoder), if another
        self._scope_vectors: tuple[np.ndarray, np.ndarray] | None = None
        self._example_vectors: list[np.ndarray] | None = None
        self._vocabulary: tuple[frozenset[str], frozenset[str]] | None = None
        self._lock = threading.Lock()

    def _handoff_text(self, message: str | None) -> str:
        if message is None:
            return self.handoff_message
        return message.replace("{contact}", contact_text(self.spec.handoff.contact))

    def screen(self, question: str) -> Verdict:
        """Rules first, then hand-off triggers, each by its patterns or its examples; ANSWER when none fires."""
        for score in self.scores(question, stop_at_first=True):
            if score.fires:
                check = score.check
                return self.after_hours(check.id) if check.hours_apply else Verdict(check.kind, check.message, check.id)
        return ANSWER

    def after_hours(self, trigger: str) -> Verdict:
        """The hand-off to the contact for ``trigger``: the contact during opening hours (or without any), else when
        the team is back and the lead form."""
        now = self.clock()
        status = self.hours.status(now) if self.hours is not None else None
        if self.hours is None or status is None or status.open:
            return Verdict("handoff", self.handoff_message, trigger)
        text = self.hours.hours.after_hours_message.replace("{back}", self.hours.back_text(now, status.back))
        text = text.replace("{contact}", contact_text(self.spec.handoff.contact))
        return Verdict("handoff", text, trigger, lead_form=True)

    def scores(
        self, question: str, stop_at_first: bool = False, vectors: np.ndarray | None = None, learned: Vectors = None
    ) -> list[Score]:
        """Each check's pattern match and best example similarity for ``question``, in order (up to the first that
        fires with ``stop_at_first``). Without an embedder, examples are not compared; ``vectors`` (and ``learned``,
        under the learned checks' own encoder) are the embeddings of ``pieces(question)`` when the caller has them (a
        batch, as the safety eval does)."""
        texts = (question, fold(question), self.respell(question))
        split: list[str] = []  # pieces(question), cut once when something must embed them
        if vectors is None and self.embed is not None and self.compares():
            split = self.pieces(question)
            vectors = self.embed(split)
        examples = self.example_vectors() if vectors is not None else []
        out: list[Score] = []
        for i, check in enumerate(self.checks):
            matched = check.pattern is not None and any(affirmed(check.pattern, t) for t in texts)
            similarity, example, vetoed = -1.0, "", False
            learn = check.classifier
            if vectors is not None and learn is not None and (not matched or learn.veto > -np.inf):
                if learned is None:  # only when a learned check is reached (a pattern may decide first)
                    embed = self.learned_embed
                    learned = vectors if embed is None else embed(split or self.pieces(question))
                similarity = learn.score(learned)
                vetoed = matched and similarity < learn.veto  # words that match, a message that reads like none
                matched = matched and not vetoed
            elif not matched and vectors is not None and check.examples:
                sims = vectors @ examples[i].T  # pieces × examples
                best = int(np.argmax(sims.max(axis=0)))
                similarity, example = float(sims[:, best].max()), check.examples[best]
            out.append(Score(check, matched, similarity, example, vetoed))
            if stop_at_first and out[-1].fires:
                break
        return out

    def pieces(self, message: str) -> list[str]:
        """What is compared with the examples: the message and its sentences (``pieces``), and the same respelled
        when a word looks like a misspelt word of the examples; clauses a pattern finds denied are left out."""
        said = self.undenied(message)
        respelled = self.respell(said)
        return pieces(said) + (pieces(respelled) if respelled != fold(said) else [])

    def undenied(self, message: str) -> str:
        """``message`` without the clauses in which a check's pattern matches only after a negation ("i don't have
        chest pain, but my doctor wants an ekg" → "i , but my doctor wants an ekg"): what is denied is no evidence
        by similarity either. The message as written when nothing is denied."""
        text = fold(message)
        spans = [
            denied_span(text, m)
            for c in self.checks
            if c.pattern is not None
            for m in c.pattern.finditer(text)
            if denied(text, m)
        ]
        if not spans:
            return message
        keep = [ch for i, ch in enumerate(text) if not any(a <= i < b for a, b in spans)]
        return " ".join("".join(keep).split())

    def respell(self, message: str) -> str:
        """``fold(message)`` with each word that is no known word but one edit (a letter missing, extra, wrong or
        two swapped) from a word of the examples replaced by it: "cnat breath" reads "cant breath", "tkae" "take"."""
        words = self._words()
        if not words[0] or not words[1]:  # without the embedder's vocabulary, real words could be "corrected"
            return fold(message)
        return re.sub(r"[^\W\d_]{4,}", lambda m: respelled(m.group(), *words), fold(message))

    def _words(self) -> tuple[frozenset[str], frozenset[str]]:
        """(words any text may hold, the embedder's own vocabulary; words of the examples to respell towards)."""
        if self._vocabulary is None:
            targets = {w for c in self.checks for e in c.examples for w in re.findall(r"[^\W\d_]{4,}", fold(e))}
            folder = getattr(_embedder_key(self.embed), "folder", None) if self.embed is not None else None
            known = known_words(folder)
            # a word a pattern or the negation and past readings spell out is a word as written ("hace tres años"
            # must not read "face tres anos")
            spelt = READING_WORDS.union(*(pattern_words(c.pattern.pattern) for c in self.checks if c.pattern))
            self._vocabulary = (known | targets | spelt if known else frozenset(), frozenset(targets))
        return self._vocabulary

    def example_vectors(self, batch: int = EMBED_BATCH) -> list[np.ndarray]:
        """Each check's example embeddings (an empty matrix for one without examples), computed once; ``batch``
        texts per call (the default keeps serving on the numpy BERT)."""
        with self._lock:
            if self._example_vectors is None:
                assert self.embed is not None
                known = _EXAMPLE_CACHE.setdefault(_embedder_key(self.embed), {})
                todo = sorted({e for c in self.checks for e in c.examples} - known.keys())
                for i in range(0, len(todo), batch):
                    known.update(zip(todo[i : i + batch], self.embed(todo[i : i + batch]), strict=True))
                self._example_vectors = [
                    np.stack([known[e] for e in c.examples]) if c.examples else np.zeros((0, 1), dtype=np.float32)
                    for c in self.checks
                ]
            return self._example_vectors

    def warm(self) -> None:
        """Embed the examples now (at start) rather than on the first message."""
        if self.embed is not None and self.compares():
            self.example_vectors()

    def compares(self) -> bool:
        """Whether some check compares the message's vectors (examples, a classifier): messages must be embedded."""
        return any(c.examples or c.classifier for c in self.checks)

    def learn(self, classifiers: dict[str, Classifier], embed: Embed | None = None) -> None:
        """Let these checks' classifiers (kit/services/safety/learned.py) decide instead of their examples; ``embed``:
        the encoder they were trained on, when it is not the guardrails' own."""
        self.learned_embed = embed
        self.checks = [replace(c, classifier=classifiers.get(c.id, c.classifier)) for c in self.checks]
        self._example_vectors = None

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


# Example embeddings per loaded embedding model, shared by every Guardrails of the process (eval and tests build many).
_EXAMPLE_CACHE: dict[object, dict[str, np.ndarray]] = {}


def _embedder_key(embed: Embed) -> object:
    """The loaded model behind ``embed`` (Embedder.embed shares one per process and name), else ``embed`` itself."""
    owner = getattr(embed, "__self__", None)
    return getattr(owner, "model", None) or embed


def _compile(patterns: Sequence[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00b4": "'", "`": "'"})


def fold(text: str) -> str:
    """``text`` lower-cased, without accents (``está`` → ``esta``), typographic quotes made plain and spaces
    collapsed: how patterns see a message besides its own spelling."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_QUOTES).lower())
    return " ".join("".join(ch for ch in decomposed if not unicodedata.combining(ch)).split())


def pieces(message: str) -> list[str]:
    """The message, then its sentences when it has several (an emergency mentioned in passing is not diluted by
    the rest): what is compared with the examples."""
    text = " ".join(message.split())
    sentences = [s for s in re.split(r"(?<=[.!?;])\s+|\s+(?:but|and then|also)\s+", text) if len(s.split()) >= 3]
    return [text, *sentences[:MAX_PIECES]] if len(sentences) > 1 else [text]

"""One answer as the assistant gives it: its kind, sources and streamed text, and its one JSON rendering."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.chunk import Chunk
from kit.components.chat_template import ChatMessage
from kit.services.assistant.claims import ClaimCheck
from kit.services.assistant.prompt import CITE
from kit.services.safety.guardrails import Kind


@dataclass(frozen=True)
class SourceRef:
    """A numbered document given to the model, as an answer cites it: [n]."""

    n: int
    source: str
    title: str
    location: str
    text: str

    def label(self) -> str:
        where = f", {self.location}" if self.location else ""
        return f"[{self.n}] {self.source}{where}" + (f" — {self.title}" if self.title else "")


@dataclass
class Reply:
    """One answer: its kind and sources are known at once; its text streams when iterated."""

    question: str
    kind: Kind
    reason: str
    sources: list[SourceRef]
    sent: ChatMessage  # the user turn as the model saw it; keep it in history for KV-cache reuse
    model: str
    pieces: Iterator[str] = field(default_factory=lambda: iter(()), repr=False)
    text: str = ""
    started: float = field(default_factory=time.perf_counter)
    ttft_s: float | None = None  # until the customer saw the first words (the output guard holds a few back)
    first_token_s: float | None = None  # until the model wrote its first token
    total_s: float | None = None
    n_pieces: int = 0
    model_pieces: int = 0  # what the model wrote, before the guards (a count at max_tokens means it was cut off)
    withheld: str = ""  # why the output guard cut the answer off, if it did
    prompt_tokens: int = 0  # the whole prompt the model read (system prompt, history, documents, question)
    given: str = field(default="", repr=False)  # that prompt's text: what the model may copy facts from
    claims: ClaimCheck | None = field(default=None, repr=False)  # what the claim check kept, dropped and why
    evidence: float | None = None  # the best retrieved chunk's cosine similarity to the question; None: no retrieval
    lead_form: bool = False  # a hand-off outside opening hours: offer the form for the customer's details

    @property
    def tokens(self) -> int:
        """Tokens the model wrote (the guards may release them in fewer, longer pieces); a fixed reply's pieces."""
        return self.model_pieces or self.n_pieces

    @property
    def checks(self) -> list[str]:
        """The claim check's decisions on this answer (a sentence dropped and why, run-on cut, the passage quoted)."""
        return list(self.claims.decisions) if self.claims else []

    @property
    def fallback(self) -> bool:
        """Whether the answer is a quoted passage rather than the model's words (nothing trustworthy was left)."""
        return self.claims is not None and self.claims.fallback is not None

    def __iter__(self) -> Iterator[str]:
        for piece in self.pieces:
            if self.ttft_s is None:
                self.ttft_s = time.perf_counter() - self.started
            self.text += piece
            self.n_pieces += 1
            yield piece
        self.total_s = time.perf_counter() - self.started
        if self.ttft_s is None:
            self.ttft_s = self.total_s

    def finish(self) -> str:
        """Consume the stream; the whole answer."""
        for _ in self:
            pass
        return self.text

    @property
    def cited(self) -> list[int]:
        """Source numbers the answer cites, in order, only those that exist."""
        found = (int(n) for n in CITE.findall(self.text))
        return list(dict.fromkeys(n for n in found if 1 <= n <= len(self.sources)))

    def history(self) -> list[ChatMessage]:
        """The two turns to append to the conversation's history."""
        return [self.sent, ChatMessage(role="assistant", content=self.text)]


def generation_s(reply: Reply) -> float:
    """Seconds the model spent writing after its first token."""
    start = reply.first_token_s if reply.first_token_s is not None else reply.ttft_s
    return max((reply.total_s or 0.0) - (start or 0.0), 1e-9)


def refs(chunks: Sequence[Chunk]) -> list[SourceRef]:
    return [SourceRef(i, c.source, c.title, c.location, c.text) for i, c in enumerate(chunks, start=1)]


def reply_json(reply: Reply) -> dict[str, Any]:
    """A finished reply as JSON: answer, sources, refused, handoff, rule, timings."""
    seconds = reply.total_s or 0.0
    gen = generation_s(reply)
    return {
        "answer": reply.text,
        "kind": reply.kind,
        "refused": reply.kind == "refuse",
        "handoff": reply.kind == "handoff",
        "lead_form": reply.lead_form,
        "rule": reply.reason if reply.kind == "rule" else None,
        "sources": [{"n": s.n, "source": s.source, "title": s.title, "location": s.location} for s in reply.sources],
        "cited": reply.cited,
        "withheld": reply.withheld or None,
        "fallback": reply.fallback,
        "checks": reply.checks,
        "model": reply.model,
        "ttft_s": round(reply.ttft_s or 0.0, 4),
        "total_s": round(seconds, 4),
        "prompt_tokens": reply.prompt_tokens,
        "tokens": reply.tokens,
        "tokens_per_s": round((reply.tokens - 1) / gen, 2) if reply.tokens > 1 else 0.0,
    }

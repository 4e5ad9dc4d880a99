"""One synthesised example before it is written, and how it becomes a conversation record."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from kit.chunk import Chunk
from kit.records import Conversation


@dataclass
class Example:
    """A conversation (user, assistant turns) with its intent, source chunks and paraphrase group."""

    turns: list[tuple[str, str]]
    intent: str
    group: str
    chunks: list[Chunk] = field(default_factory=list)  # the documents the answers must be grounded in
    order: tuple[int, ...] = ()  # where it came from, so output order never depends on timing
    origin: str = "template"  # "template", "teacher" or "guardrails"

    @property
    def question(self) -> str:
        return self.turns[0][0]

    def record(self, domain_name: str, with_context: bool) -> dict[str, Any]:
        """The conversation as one JSONL object (validated as a Conversation)."""
        from kit.services.assistant.prompt import user_turn

        messages: list[dict[str, str]] = []
        for question, answer in self.turns:
            user = user_turn(question, self.chunks)["content"] if with_context else question
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        raw = {
            "id": f"{domain_name}-synth-{self.digest()[:12]}",
            "intent": self.intent,
            "group": self.group,
            "sources": [chunk_ref(c) for c in self.chunks],
            "messages": messages,
        }
        return Conversation.model_validate(raw).model_dump(exclude_none=True)

    def digest(self) -> str:
        text = "\x00".join(f"{q}\x01{a}" for q, a in self.turns)
        return hashlib.sha256(f"{self.group}\x00{text}".encode()).hexdigest()


def chunk_ref(chunk: Chunk) -> str:
    """How an example names its source chunk: 'docs/catalogue.csv#<chunk id>' (the part before # is the file)."""
    return f"{chunk.source}#{chunk.id}"


def resolve_sources(refs: list[str], chunks: list[Chunk]) -> list[Chunk]:
    """The chunks an example's ``sources`` name (those still in the documents), for putting them in a prompt."""
    by_id = {c.id: c for c in chunks}
    return [by_id[r.split("#", 1)[1]] for r in refs if "#" in r and r.split("#", 1)[1] in by_id]

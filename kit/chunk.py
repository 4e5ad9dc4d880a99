"""A piece of a document, as ingest makes it and retrieval returns it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of text with where it came from."""

    text: str  # what the model reads, including the title line
    source: str  # document path relative to the domain, e.g. docs/policies/returns.md
    title: str  # heading path ("Returns > Refunds"), row id, FAQ question or page label
    location: str = ""  # "row 12", "page 3", "line 40"
    metadata: dict[str, str] = field(default_factory=dict)  # filter columns, e.g. {"category": "tents"}
    score: float = 0.0  # set by search: fused rank score in [0, 1], higher is better
    similarity: float | None = None  # cosine similarity to the query, when vector search found it

    @property
    def id(self) -> str:
        """Stable id from the source and the content: same text in the same file, same id."""
        digest = hashlib.sha256(f"{self.source}\x00{self.title}\x00{self.text}".encode()).hexdigest()
        return digest[:32]

    def scored(self, score: float, similarity: float | None = None) -> Chunk:
        """A copy with search scores."""
        return replace(self, score=score, similarity=similarity)

    def cite(self) -> str:
        """How an answer names this chunk's origin: 'docs/returns.md — Returns > Refunds'."""
        return f"{self.source} — {self.title}" if self.title else self.source

"""Hybrid search over a domain's index: BM25 and vectors fused by reciprocal rank.

An exact identifier in the question (a SKU, a package code) puts its own row first. An optional
cross-encoder reorders the fused candidates when the domain configures one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from kit.chunk import Chunk
from kit.components.keyword import KeywordIndex, identifiers
from kit.domain import Domain
from kit.errors import IndexMissing
from kit.services.retrieval.ingest import (
    chunk_from_row,
    index_domain,
    indexed_model,
    open_store,
    read_manifest,
    stale_model,
)

CANDIDATES = 30


class Retriever:
    """Search one indexed domain. Build it with ``Retriever.open(domain)``; reuse it for every query."""

    def __init__(self, domain: Domain, chunks: list[Chunk], store: Any, embedder: Any) -> None:
        self.domain = domain
        self.settings = domain.spec.retrieval
        self.chunks = chunks
        self.by_id = {c.id: i for i, c in enumerate(chunks)}
        self.by_row: dict[str, list[int]] = {}
        for i, c in enumerate(chunks):
            if "row_id" in c.metadata:
                self.by_row.setdefault(c.metadata["row_id"].upper(), []).append(i)
        self.keyword = KeywordIndex([c.text for c in chunks])
        self.store = store
        self.embedder = embedder

    @classmethod
    def open(cls, domain: Domain) -> Retriever:
        """Load the index built by `kit index`; IndexMissing when there is none. An index built with another
        embedding model than the domain names is indexed again first: its vectors cannot be searched."""
        from kit.components.embedding import Embedder

        manifest = read_manifest(domain)
        if manifest is None:
            raise IndexMissing(f"domain '{domain.name}' has no index yet", f"run: kit index {domain.root}")
        if stale_model(domain, manifest) is not None:  # index_domain says so
            index_domain(domain, progress=False)
            manifest = read_manifest(domain)
            assert manifest is not None
        chunks = [chunk_from_row(row) for row in manifest["chunks"]]
        return cls(domain, chunks, open_store(domain), Embedder(indexed_model(manifest)))

    def retrieve(self, query: str, k: int | None = None, filters: dict[str, str] | None = None) -> list[Chunk]:
        """The k best chunks for a query, best first, optionally filtered on metadata."""
        k = k or self.settings.k
        if not query.strip() or not self.chunks:
            return []
        n = max(CANDIDATES, 3 * k)
        similarity: dict[int, float] = {}
        vector_ranked: list[int] = []
        for hit in self.store.query(self.embedder.embed_query(query), n, filters):
            if hit.id in self.by_id:
                vector_ranked.append(self.by_id[hit.id])
                similarity[self.by_id[hit.id]] = 1.0 - hit.distance
        keyword_ranked = [i for i, _ in self.keyword.search(query, n * 3) if _matches(self.chunks[i], filters)][:n]
        fused = self._fuse(keyword_ranked, vector_ranked)
        order = self._exact_first(query, filters) + [i for i in sorted(fused, key=fused.__getitem__, reverse=True)]
        order = list(dict.fromkeys(order))
        if self.settings.reranker:
            order = _rerank(self.settings.reranker, query, [self.chunks[i] for i in order[:n]], order[:n])
        top = max(fused.values(), default=1.0) or 1.0
        return [self.chunks[i].scored(min(1.0, fused.get(i, top) / top), similarity.get(i)) for i in order[:k]]

    def _fuse(self, keyword_ranked: list[int], vector_ranked: list[int]) -> dict[int, float]:
        scores: dict[int, float] = {}
        for weight, ranked in (
            (self.settings.bm25_weight, keyword_ranked),
            (self.settings.vector_weight, vector_ranked),
        ):
            for rank, i in enumerate(ranked, start=1):
                scores[i] = scores.get(i, 0.0) + weight / (self.settings.rrf_k + rank)
        return scores

    def _exact_first(self, query: str, filters: dict[str, str] | None) -> list[int]:
        found = [i for ident in identifiers(query) for i in self.by_row.get(ident, [])]
        return [i for i in found if _matches(self.chunks[i], filters)]


def _matches(chunk: Chunk, filters: dict[str, str] | None) -> bool:
    return not filters or all(chunk.metadata.get(key) == value for key, value in filters.items())


@cache
def _cross_encoder(name: str) -> Any:
    from kit.extras import SENTENCE_TRANSFORMERS

    SENTENCE_TRANSFORMERS.require(f"the re-ranker {name} (retrieval.reranker)")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(name, device="cpu")


def _rerank(name: str, query: str, chunks: list[Chunk], order: list[int]) -> list[int]:
    scores = _cross_encoder(name).predict([(query, c.text) for c in chunks])
    return [i for _, i in sorted(zip(scores, order, strict=True), key=lambda pair: -float(pair[0]))]

"""chromadb as the vector store: a local PersistentClient, or a server by configuration alone.

kit embeds chunks itself (chromadb's default embedding function downloads a model and fails
offline), so collections are created without one and always given vectors. A server that stops
answering is a ``StoreUnavailable`` naming it, whatever the call: kit's documents and its manifest
(the last complete index, written only after the store) are local and untouched, and chromadb's client
connects again on the next call, so kit carries on once the server is back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.chunk import Chunk
from kit.errors import KitError
from kit.settings import ServerSettings

ADD_BATCH = 512


@dataclass(frozen=True)
class Hit:
    """A vector-search result."""

    id: str
    chunk: Chunk
    distance: float


class StoreUnavailable(KitError):
    """The chromadb server of retrieval.server does not answer."""


def unavailable(server: ServerSettings, why: object) -> StoreUnavailable:
    """The error for a chromadb server that cannot be reached or stopped answering."""
    return StoreUnavailable(
        f"the chromadb server at {server.host}:{server.port} does not answer ({why})",
        "start it again (`chroma run --path <its folder> --port <port>`) and retry: the documents and the last "
        "complete index are untouched, and kit index resumes where it stopped; or remove retrieval.server from "
        "domain.yaml",
    )


def _client(folder: Path, server: ServerSettings | None) -> Any:
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    if server is None:
        folder.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(folder), settings=settings)
    try:
        return chromadb.HttpClient(host=server.host, port=server.port, ssl=server.ssl, settings=settings)
    except Exception as exc:  # chromadb raises plain Exception/ValueError when the server is unreachable
        raise unavailable(server, exc) from None


class VectorStore:
    """One collection of chunks with their vectors."""

    def __init__(self, folder: Path, collection: str, server: ServerSettings | None = None) -> None:
        self.server = server
        self.client = _client(folder, server)
        with self.answering():
            self.collection = self.client.get_or_create_collection(
                name=collection, embedding_function=None, metadata={"hnsw:space": "cosine"}
            )

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Calls to a server that fails to answer (refused, reset, cut off mid-request) raise StoreUnavailable."""
        import httpx

        try:
            yield
        except httpx.TransportError as exc:
            if self.server is None:
                raise
            raise unavailable(self.server, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None

    def ids(self) -> set[str]:
        """Ids of every chunk stored."""
        with self.answering():
            return {i for batch in self._pages(include=[]) for i in batch["ids"]}

    def _pages(self, include: list[str], size: int = 5000) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self.collection.get(include=include, limit=size, offset=offset)
            if not page["ids"]:
                return
            yield page
            offset += len(page["ids"])

    def add(self, chunks: list[Chunk], vectors: Any) -> None:
        """Store chunks with their vectors (idempotent: ids are content hashes)."""
        for start in range(0, len(chunks), ADD_BATCH):
            part = chunks[start : start + ADD_BATCH]
            with self.answering():
                self.collection.upsert(
                    ids=[c.id for c in part],
                    embeddings=[list(map(float, v)) for v in vectors[start : start + ADD_BATCH]],
                    documents=[c.text for c in part],
                    metadatas=[_meta(c) for c in part],
                )

    def delete(self, ids: list[str]) -> None:
        """Remove chunks by id."""
        for start in range(0, len(ids), ADD_BATCH):
            with self.answering():
                self.collection.delete(ids=ids[start : start + ADD_BATCH])

    def query(self, vector: list[float], n: int, where: dict[str, str] | None = None) -> list[Hit]:
        """The n nearest chunks, optionally filtered on metadata."""
        with self.answering():
            found = self.collection.query(
                query_embeddings=[vector], n_results=n, where=_where(where),
                include=["documents", "metadatas", "distances"],
            )  # fmt: skip
        return [
            Hit(i, _chunk(doc, meta), dist)
            for i, doc, meta, dist in zip(
                found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True
            )
        ]

    def count(self) -> int:
        """How many chunks are stored."""
        with self.answering():
            return int(self.collection.count())


def _meta(chunk: Chunk) -> dict[str, str]:
    return {
        "source": chunk.source,
        "title": chunk.title,
        "location": chunk.location,
        **{f"m_{k}": v for k, v in chunk.metadata.items()},
    }


def _chunk(text: str, meta: dict[str, Any]) -> Chunk:
    extra = {k[2:]: str(v) for k, v in meta.items() if k.startswith("m_")}
    return Chunk(text=text, source=meta["source"], title=meta["title"], location=meta["location"], metadata=extra)


def _where(filters: dict[str, str] | None) -> dict[str, Any] | None:
    if not filters:
        return None
    clauses = [{f"m_{k}": v} for k, v in filters.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}

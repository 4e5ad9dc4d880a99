"""chromadb as the vector store: a local PersistentClient, or a server by configuration alone.

kit embeds chunks itself (chromadb's default embedding function downloads a model and fails
offline), so collections are created without one and always given vectors.
"""

from __future__ import annotations

from collections.abc import Iterator
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
        raise KitError(
            f"cannot reach the chromadb server at {server.host}:{server.port}: {exc}",
            "start it (`chroma run --path <folder> --port <port>`) or remove retrieval.server from domain.yaml",
        ) from None


class VectorStore:
    """One collection of chunks with their vectors."""

    def __init__(self, folder: Path, collection: str, server: ServerSettings | None = None) -> None:
        self.client = _client(folder, server)
        self.collection = self.client.get_or_create_collection(
            name=collection, embedding_function=None, metadata={"hnsw:space": "cosine"}
        )

    def ids(self) -> set[str]:
        """Ids of every chunk stored."""
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
            self.collection.upsert(
                ids=[c.id for c in part],
                embeddings=[list(map(float, v)) for v in vectors[start : start + ADD_BATCH]],
                documents=[c.text for c in part],
                metadatas=[_meta(c) for c in part],
            )

    def delete(self, ids: list[str]) -> None:
        """Remove chunks by id."""
        for start in range(0, len(ids), ADD_BATCH):
            self.collection.delete(ids=ids[start : start + ADD_BATCH])

    def query(self, vector: list[float], n: int, where: dict[str, str] | None = None) -> list[Hit]:
        """The n nearest chunks, optionally filtered on metadata."""
        found = self.collection.query(
            query_embeddings=[vector], n_results=n, where=_where(where), include=["documents", "metadatas", "distances"]
        )
        return [
            Hit(i, _chunk(doc, meta), dist)
            for i, doc, meta, dist in zip(
                found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True
            )
        ]

    def count(self) -> int:
        """How many chunks are stored."""
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

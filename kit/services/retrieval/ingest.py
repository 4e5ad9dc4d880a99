"""Index a domain's documents incrementally.

Chunk ids are hashes of source and content, so a re-run embeds only new or changed chunks, removes
those of changed or deleted files, and leaves the rest alone. New chunks are stored before stale ones
are deleted and the manifest (what keyword search and `kit search` read) is replaced atomically last:
an interrupted run leaves the previous index usable, and the next run completes it without
duplicates. An index built with another embedding model than the configured one is embedded again from scratch.
"""

from __future__ import annotations

import errno
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.chunk import Chunk
from kit.domain import Domain, document_files
from kit.errors import KitError
from kit.files import replace_text
from kit.services.retrieval.loaders import Document, Skip, load
from kit.settings import embedding_name

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
EMBED_BATCH = 256


@dataclass
class IndexReport:
    """What one `kit index` run did."""

    files: int = 0
    chunks: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def collection_name(domain: Domain) -> str:
    """The chromadb collection for a domain (3–512 characters)."""
    return f"kit-{domain.name}"


def manifest_path(domain: Domain) -> Path:
    """Where the index's list of chunks lives."""
    return domain.build_dir / MANIFEST


def read_manifest(domain: Domain) -> dict | None:
    """The last completed index's manifest, or None."""
    path = manifest_path(domain)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def indexed_model(manifest: dict) -> str:
    """The embedding model an index was built with, by its resolved name ('embedded' was always MiniLM)."""
    return embedding_name(manifest["embedding_model"])


def stale_model(domain: Domain, manifest: dict | None) -> str | None:
    """The index's embedding model when it is not the configured one (its vectors cannot be searched), else None."""
    if manifest is None or indexed_model(manifest) == embedding_name(domain.spec.retrieval.embedding_model):
        return None
    return indexed_model(manifest)


def collect(domain: Domain) -> tuple[list[Chunk], int, list[tuple[str, str]]]:
    """Every chunk of every document, the number of files read, and the files skipped with reasons."""
    chunks: dict[str, Chunk] = {}
    skipped: list[tuple[str, str]] = []
    files = document_files(domain)
    for path, source in files:
        rel = domain.rel(path) if not path.is_symlink() else _link_rel(domain, path)
        try:
            for chunk in load(Document(path, rel, source.table), domain.spec.retrieval, domain.root):
                chunks.setdefault(chunk.id, chunk)
        except Skip as reason:
            skipped.append((rel, str(reason)))
        except OSError as exc:
            skipped.append((rel, f"cannot be read: {exc.strerror or exc}"))
    return list(chunks.values()), len(files) - len(skipped), skipped


def _link_rel(domain: Domain, path: Path) -> str:
    return path.relative_to(domain.root).as_posix() if path.is_relative_to(domain.root) else str(path)


def open_store(domain: Domain):  # noqa: ANN201  (returns VectorStore; imported lazily)
    """The domain's vector store: local in its build folder, or the configured server."""
    from kit.components.vector_store import VectorStore

    return VectorStore(domain.build_dir / "chroma", collection_name(domain), domain.spec.retrieval.server)


Progress = Callable[[int, int], None]  # (chunks embedded, chunks to embed)


def index_domain(
    domain: Domain, progress: bool = True, prune: bool = True, on_progress: Progress | None = None
) -> IndexReport:
    """Bring the domain's index up to date with its documents. ``prune=False`` leaves the chunks of changed or deleted
    files in the store (a retriever opened on the previous manifest still finds them) until ``prune_index``;
    ``on_progress`` hears how far the embedding is."""
    from kit.components.embedding import Embedder

    started = time.perf_counter()
    chunks, files, skipped = collect(domain)
    model = embedding_name(domain.spec.retrieval.embedding_model)
    previous = read_manifest(domain)
    if (old := stale_model(domain, previous)) is not None:
        logger.warning(
            "%s: the index was built with the embedding model %s, the domain now names %s: embedding every chunk "
            "again", domain.name, old, model,
        )  # fmt: skip
    chunks += _kept_from_skipped(previous, {rel for rel, _ in skipped}, model)
    report = IndexReport(files=files, chunks=len(chunks), skipped=skipped)
    with _disk_full_is_an_error(domain):
        store = _fresh_store(domain, previous, model)
        existing = store.ids()
        new = [c for c in chunks if c.id not in existing]
        stale = existing - {c.id for c in chunks}
        _count(report, new, stale, previous, existing)
        if new:
            _embed_and_store(store, Embedder(model), new, progress, on_progress)
        if stale and prune:
            store.delete(sorted(stale))
    write_manifest(domain, chunks, model)
    report.seconds = time.perf_counter() - started
    return report


DISK_FULL = ("disk is full", "no space left", "disk full", "quota exceeded")


@contextmanager
def _disk_full_is_an_error(domain: Domain) -> Iterator[None]:
    """A full disk under the vector store (sqlite's or the OS's words for it) as a KitError, not a traceback.

    The manifest is written only after the store, so search keeps reading the last complete index.
    """
    try:
        yield
    except Exception as exc:
        full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
        if not (full or any(words in str(exc).lower() for words in DISK_FULL)):
            raise
        raise KitError(
            f"the disk holding {domain.build_dir} is full; indexing stopped before it finished",
            "free some space and run `kit index` again: the previous index is still in use, and chunks already "
            "stored are not embedded twice",
        ) from None


def _kept_from_skipped(previous: dict | None, skipped: set[str], model: str) -> list[Chunk]:
    """Chunks of files that were indexed before and are skipped now: kept, so nothing indexed is lost."""
    if previous is None or indexed_model(previous) != model:
        return []
    return [chunk_from_row(row) for row in previous["chunks"] if row["source"] in skipped]


def chunk_from_row(row: dict) -> Chunk:
    """A chunk from its manifest row."""
    return Chunk(
        text=row["text"], source=row["source"], title=row["title"], location=row["location"], metadata=row["metadata"]
    )


def _fresh_store(domain: Domain, previous: dict | None, model: str):  # noqa: ANN202
    store = open_store(domain)
    if previous is not None and indexed_model(previous) != model:
        with store.answering():
            store.client.delete_collection(collection_name(domain))
        store = open_store(domain)
    return store


def _count(report: IndexReport, new: list[Chunk], stale: set[str], previous: dict | None, existing: set[str]) -> None:
    old_places = {_place(c) for c in (previous or {}).get("chunks", []) if c["id"] in stale}
    report.updated = sum(_place(asdict(c)) in old_places for c in new)
    report.added = len(new) - report.updated
    report.removed = len(stale) - min(report.updated, len(stale))
    report.unchanged = report.chunks - len(new)


def _place(chunk: dict) -> tuple[str, str]:
    return chunk["source"], chunk["title"]


def _embed_and_store(store, embedder, chunks: list[Chunk], progress: bool, on_progress: Progress | None) -> None:  # noqa: ANN001
    from tqdm import tqdm

    with tqdm(total=len(chunks), desc="embedding", unit="chunk", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(chunks), EMBED_BATCH):
            part = chunks[start : start + EMBED_BATCH]
            store.add(part, embedder.embed_passages([c.text for c in part]))
            bar.update(len(part))
            if on_progress is not None:
                on_progress(start + len(part), len(chunks))


def prune_index(domain: Domain) -> int:
    """Delete the stored chunks the manifest no longer lists (left by ``index_domain(prune=False)``); how many."""
    manifest = read_manifest(domain)
    if manifest is None:
        return 0
    store = open_store(domain)
    stale = store.ids() - {row["id"] for row in manifest["chunks"]}
    if stale:
        store.delete(sorted(stale))
    return len(stale)


def write_manifest(domain: Domain, chunks: Iterable[Chunk], model: str) -> None:
    """Replace the manifest atomically (write a temporary file, then rename)."""
    path = manifest_path(domain)
    rows = [{"id": c.id, **{k: v for k, v in asdict(c).items() if k not in ("score", "similarity")}} for c in chunks]
    text = json.dumps({"embedding_model": model, "chunks": rows}, ensure_ascii=False)
    try:
        replace_text(path, text)
    except KitError as exc:  # the index manifest, named, and what to run once the disk is fixed
        raise KitError(
            exc.what.replace("cannot write", "cannot write the index manifest", 1),
            "free some disk space or check permissions, then run `kit index` again",
        ) from None

"""The running assistant's documents: list, add or replace, delete, each change re-indexed while the assistant keeps
answering.

A change is checked before it counts: the file must be a type the loaders read, inside one of the domain's sources,
loadable, and bring no new problem `kit validate` would report. Then the index is brought up to date incrementally
beside the serving one (the serving retriever ignores chunks its manifest does not list, and the stale ones stay in
the store until the swap), a retriever is opened on the new index and swapped into the chat service, and only then
are the stale chunks deleted. Questions during the re-index are answered from the previous index. A change that
fails at any step is undone: the file as it was, the manifest as it was, the previous retriever serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from kit.domain import Domain, document_files
from kit.errors import KitError, Problem
from kit.files import replace_with
from kit.services.assistant.chat import ChatService
from kit.services.retrieval.ingest import IndexReport, index_domain, manifest_path, prune_index
from kit.services.retrieval.loaders import SUFFIXES, Document, Skip, load
from kit.settings import Source

logger = logging.getLogger(__name__)

RejectCode = Literal["bad_path", "unsupported_type", "too_large", "not_found", "named_in_spec", "invalid_document"]
State = Literal["idle", "checking", "indexing", "done", "failed"]
KINDS = {".md": "Markdown", ".markdown": "Markdown", ".txt": "text", ".text": "text", ".rst": "text", ".csv": "CSV",
         ".html": "HTML", ".htm": "HTML", ".pdf": "PDF", ".jsonl": "FAQ JSONL"}  # fmt: skip


class DocumentRejected(KitError):
    """A document change that was refused and changed nothing: why (``code``), and each problem found."""

    def __init__(self, code: RejectCode, what: str, hint: str = "", problems: list[Problem] | None = None) -> None:
        super().__init__(what, hint)
        self.code = code
        self.problems = problems or []


@dataclass(frozen=True)
class DocumentInfo:
    """One document the domain serves."""

    path: str
    kind: str
    bytes: int
    modified: float
    chunks: int  # in the index now serving
    in_spec: bool  # named on its own in domain.yaml (replace it; it cannot be deleted here)


@dataclass(frozen=True)
class Progress:
    """Where the latest document change is."""

    state: State = "idle"
    action: str = ""
    embedded: int = 0
    to_embed: int = 0
    message: str = ""
    problems: tuple[str, ...] = ()  # why the change was refused
    warnings: tuple[str, ...] = ()  # what the change made stale in the eval sets (it went through)
    when: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Change:
    """What one document change did to the index, and the eval items it made stale (it went through)."""

    report: IndexReport
    stale: tuple[str, ...] = ()


class DocumentService:
    """A served domain's documents, changed one at a time, the chat service's retriever swapped after each."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat
        self.lock = threading.Lock()  # one change at a time; others wait their turn
        self.progress = Progress()

    @property
    def domain(self) -> Domain:
        return self.chat.domain

    def documents(self) -> list[DocumentInfo]:
        """Every document under the domain's sources, with its chunks in the serving index."""
        counts = Counter(c.source for c in getattr(self.chat.retriever, "chunks", []))
        named = self._named()
        found = []
        for path, _ in document_files(self.domain):
            rel, stat = self.domain.rel(path), path.stat()
            kind = KINDS.get(path.suffix.lower(), path.suffix or "?")
            found.append(DocumentInfo(rel, kind, stat.st_size, stat.st_mtime, counts[rel], rel in named))
        return found

    def put(self, filename: str, data: bytes, path: str | None = None) -> Change:
        """Add or replace a document (at ``path``, else by ``filename``) and serve it; DocumentRejected when refused."""
        with self._refusals(f"upload {path or filename}"):
            rel = self.target(filename, path)
            mb = self.domain.spec.retrieval.max_file_mb
            if len(data) > mb * 1024 * 1024:
                size = f"{len(data) / 1024 / 1024:.1f} MB"
                raise DocumentRejected("too_large", f"{rel} is {size}, over the {mb} MB limit",
                                       "split it, or raise retrieval.max_file_mb")  # fmt: skip
        return self._change(f"upload {rel}", rel, data)

    def delete(self, path: str) -> Change:
        """Delete a document and stop serving it; DocumentRejected when refused."""
        with self._refusals(f"delete {path}"):
            rel = self.clean(path)
            if rel not in {self.domain.rel(p) for p, _ in document_files(self.domain)}:
                raise DocumentRejected("not_found", f"no document {rel}", "list them with GET /v1/documents")
            if rel in self._named():
                raise DocumentRejected(
                    "named_in_spec", f"{rel} is named in domain.yaml (retrieval.sources)",
                    "replace it with a new version, or remove it from domain.yaml first",
                )  # fmt: skip
        return self._change(f"delete {rel}", rel, None)

    @contextmanager
    def _refusals(self, action: str) -> Iterator[None]:
        """A change refused before it starts shows in ``progress`` too (the console reads it there)."""
        try:
            yield
        except DocumentRejected as exc:
            self._report(Progress("failed", action, message=str(exc)))
            raise

    def start(self, action: str, *args: object) -> threading.Thread:
        """Run ``put`` or ``delete`` in the background (progress in ``progress``); the console does this."""

        def run() -> None:
            try:
                getattr(self, action)(*args)
            except KitError:
                pass  # in self.progress already
            except Exception:  # (a background change must report, not die silently)
                logger.exception("a document change failed")

        thread = threading.Thread(target=run, name="kit-documents", daemon=True)
        thread.start()
        return thread

    def target(self, filename: str, path: str | None) -> str:
        """Where an upload goes: ``path`` when given, else the document of that name, else the first folder source."""
        if path:
            rel = self.clean(path)
        else:
            name = self.clean(PurePosixPath(filename.replace("\\", "/")).name or "?")
            same = [self.domain.rel(p) for p, _ in document_files(self.domain) if p.name == name]
            folders = [s.path for s in self.domain.spec.retrieval.sources if self.domain.path(s.path).is_dir()]
            if len(same) == 1:
                rel = same[0]
            elif folders:
                rel = f"{PurePosixPath(folders[0])}/{name}"
            else:
                raise DocumentRejected(
                    "bad_path", f"no folder among the domain's sources to put {name} in",
                    "give a path of an existing document to replace, or add a folder to retrieval.sources",
                )  # fmt: skip
        if self.source_of(rel) is None:
            sources = ", ".join(s.path for s in self.domain.spec.retrieval.sources)
            raise DocumentRejected(
                "bad_path", f"{rel} is not in any of the domain's sources ({sources})",
                "put it in a folder source, or give the path of a document to replace",
            )  # fmt: skip
        return rel

    def clean(self, path: str) -> str:
        """A path relative to the domain, checked: no way out of the folder, no hidden parts, a type kit reads."""
        pure = PurePosixPath(path.replace("\\", "/"))
        if not path.strip() or pure.is_absolute() or any(p in ("..", "") or p.startswith(".") for p in pure.parts):
            raise DocumentRejected("bad_path", f"path '{path}' leaves the domain folder or is hidden",
                                   "give a path inside the domain such as docs/returns.md")  # fmt: skip
        real = (self.domain.root / pure).resolve()
        if not real.is_relative_to(self.domain.root.resolve()):
            raise DocumentRejected("bad_path", f"path '{path}' leaves the domain folder", "give a path inside it")
        if pure.suffix.lower() not in SUFFIXES:
            raise DocumentRejected(
                "unsupported_type", f"unsupported file type '{pure.suffix or '(none)'}' ({pure.name})",
                "upload Markdown, text, CSV, HTML, PDF or FAQ JSONL",
            )  # fmt: skip
        return pure.as_posix()

    def source_of(self, rel: str) -> Source | None:
        """The source a document path belongs to (its own entry, or a folder holding it)."""
        for source in self.domain.spec.retrieval.sources:
            base, path = PurePosixPath(source.path), PurePosixPath(rel)
            if path == base or (self.domain.path(source.path).is_dir() and base in path.parents):
                return source
        return None

    def _named(self) -> set[str]:
        return {PurePosixPath(s.path).as_posix() for s in self.domain.spec.retrieval.sources}

    def _change(self, action: str, rel: str, data: bytes | None) -> Change:
        with self.lock:
            self._report(Progress("checking", action))
            try:
                report, stale_items = self._apply(rel, data, action)
            except DocumentRejected as exc:
                self._report(Progress("failed", action, message=str(exc), problems=tuple(map(str, exc.problems))))
                raise
            except Exception as exc:
                self._report(Progress("failed", action, message=f"failed, nothing changed: {exc}"))
                raise
            counts = f"{report.added} added, {report.removed} removed, {report.updated} updated"
            done = f"Chunks: {counts}. The assistant answers from the new index."
            stale = tuple(map(str, stale_items))
            if stale:
                done += f" {len(stale)} eval item{'s' if len(stale) != 1 else ''} no longer match the documents: "
                done += "update the eval set before the next `kit eval`."
            self._report(Progress("done", action, self.progress.embedded, self.progress.to_embed, done, warnings=stale))
            return Change(report, stale)

    def _apply(self, rel: str, data: bytes | None, action: str) -> tuple[IndexReport, list[Problem]]:
        """Write, check, index, swap; on any failure put the file and the manifest back as they were."""
        from kit.services.retrieval.retrieve import Retriever
        from kit.validation.checks import validate_domain

        path, manifest = self.domain.root / rel, manifest_path(self.domain)
        before = path.read_bytes() if path.is_file() else None
        manifest_before = manifest.read_bytes() if manifest.is_file() else None
        known = set(validate_domain(self.domain))
        created = _write(path, data)
        try:
            stale = self._check(rel, data, known)
            self._report(Progress("indexing", action))
            report = index_domain(self.domain, progress=False, prune=False, on_progress=self._embedding(action))
            retriever = Retriever.open(self.domain)
        except BaseException:
            _write(path, before)
            for folder in created:
                folder.rmdir()
            if manifest_before is not None:
                _write(manifest, manifest_before)
            raise
        self.chat.retriever = retriever  # the swap: the next question searches the new index
        try:
            prune_index(self.domain)
        except Exception:  # (the new index serves; leftovers go at the next change or `kit index`)
            logger.exception("could not delete the stale chunks after %s", action)
        return report, stale

    def _check(self, rel: str, data: bytes | None, known: set[Problem]) -> list[Problem]:
        """Refuse the change if the file cannot be loaded or `kit validate` finds a new problem outside the eval
        sets; the new problems of the eval sets are returned. New prices make an eval item's expected fact stale:
        that is the eval set's to catch up with, not a reason to keep serving the old prices."""
        from kit.validation.checks import validate_domain

        problems: list[Problem] = []
        if data is not None:
            try:
                load(Document(self.domain.root / rel, rel, self.source_of(rel).table), self.domain.spec.retrieval,
                     self.domain.root)  # fmt: skip
            except Skip as reason:
                problems.append(Problem(rel, 0, str(reason)))
        spec = self.domain.spec.eval
        eval_files = {PurePosixPath(f).as_posix() for f in (spec.set, spec.heldout, spec.safety) if f}
        new = sorted(set(validate_domain(self.domain)) - known)
        stale = [p for p in new if PurePosixPath(p.file).as_posix() in eval_files]
        problems += [p for p in new if p not in stale]
        if problems:
            first = problems[0]
            n = len(problems)
            raise DocumentRejected(
                "invalid_document", f"{rel}: {n} problem{'s' if n != 1 else ''}: {first}" + (" …" if n > 1 else ""),
                "fix the file and upload it again; nothing was changed", problems,
            )  # fmt: skip
        for problem in stale:
            logger.warning("%s made an eval item stale: %s", rel, problem)
        return stale

    def _embedding(self, action: str):  # noqa: ANN202
        def heard(done: int, total: int) -> None:
            self._report(replace(self.progress, embedded=done, to_embed=total, message=f"embedded {done}/{total}"))

        return heard

    def _report(self, progress: Progress) -> None:
        self.progress = progress
        if progress.state in ("done", "failed"):
            logger.info("%s: %s", progress.action, progress.message)


def _write(path: Path, data: bytes | None) -> list[Path]:
    """``path`` holds ``data`` (written whole, then renamed), or is gone when None; the folders it made."""
    if data is None:
        path.unlink(missing_ok=True)
        return []
    created = [p for p in reversed(path.parents) if not p.exists()]
    replace_with(path, lambda tmp: tmp.write_bytes(data))
    return list(reversed(created))

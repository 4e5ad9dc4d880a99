"""Turn one document file into chunks, or say why it is skipped.

Markdown and text by headings and paragraphs; CSV one chunk per row as ``field: value`` lines; HTML
by its main text; PDF per page; JSONL FAQ one entry per chunk.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from kit.chunk import Chunk
from kit.services.retrieval.chunking import sections, split
from kit.settings import Retrieval, TableSchema
from kit.validation.files import jsonl_lines

TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".text", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".csv", ".html", ".htm", ".pdf", ".jsonl"}
HTML_NOISE = ("script", "style", "nav", "header", "footer", "aside", "form", "noscript", "svg", "iframe")


class Skip(Exception):
    """A file that cannot be indexed, and why."""


@dataclass(frozen=True)
class Document:
    """A file to ingest: where it is, how the domain names it, and its table schema if any."""

    path: Path
    rel: str
    table: TableSchema | None = None


def load(doc: Document, settings: Retrieval, root: Path) -> list[Chunk]:
    """Chunks of one document; raises Skip with a reason a person understands."""
    data = _read(doc, settings, root)
    suffix = doc.path.suffix.lower()
    if suffix == ".pdf":
        return _pdf(doc, data, settings)
    text = _decode(data)
    if suffix == ".csv":
        return _csv(doc, text)
    if suffix == ".jsonl":
        return _faq(doc, text)
    if suffix in (".html", ".htm"):
        title, text = _html(text)
        return _markdown(doc, text, settings, title)
    return _markdown(doc, text, settings, doc.path.stem.replace("-", " ").replace("_", " ").title())


def _read(doc: Document, settings: Retrieval, root: Path) -> bytes:
    real = doc.path.resolve()
    if doc.path.is_symlink() and not real.is_relative_to(root.resolve()):
        raise Skip("symlink points outside the domain folder")
    if doc.path.suffix.lower() not in SUFFIXES:
        raise Skip(
            f"unsupported file type '{doc.path.suffix or '(none)'}'; use Markdown, text, CSV, HTML, PDF or JSONL"
        )
    size = real.stat().st_size
    if size == 0:
        raise Skip("empty file")
    if size > settings.max_file_mb * 1024 * 1024:
        raise Skip(f"{size / 1024 / 1024:.0f} MB is over the {settings.max_file_mb} MB limit (retrieval.max_file_mb)")
    data = real.read_bytes()
    if doc.path.suffix.lower() != ".pdf" and b"\x00" in data[:8192]:
        raise Skip("binary file, not text")
    return data


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise Skip(f"not UTF-8 text (line {line}); save it as UTF-8") from None


def _markdown(doc: Document, text: str, settings: Retrieval, fallback_title: str) -> list[Chunk]:
    chunks: list[Chunk] = []
    for section in sections(text):
        title = " > ".join(section.path) or fallback_title
        for piece in split(section.body, settings.chunk_size, settings.chunk_overlap):
            chunks.append(Chunk(text=f"{title}\n{piece}", source=doc.rel, title=title, location=f"line {section.line}"))
    if not chunks:
        raise Skip("no text found")
    return chunks


def _csv(doc: Document, text: str) -> list[Chunk]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    if not header:
        raise Skip("CSV has no header row")
    id_column = doc.table.id_column if doc.table else header[0]
    filters = doc.table.filter_columns if doc.table else []
    chunks: list[Chunk] = []
    try:
        for row in reader:
            values = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not any(values.values()):
                continue
            chunks.append(_row_chunk(doc, values, id_column, filters, reader.line_num))
    except csv.Error as exc:
        raise Skip(f"not valid CSV (line {reader.line_num}): {exc}") from None
    if not chunks:
        raise Skip("CSV has no rows")
    return chunks


def _row_chunk(doc: Document, row: dict[str, str], id_column: str, filters: list[str], line: int) -> Chunk:
    key = row.get(id_column, "")
    label = next((v for k, v in row.items() if k != id_column and v), "")
    title = f"{key} — {label}" if label else key
    body = "\n".join(f"{k.replace('_', ' ')}: {v}" for k, v in row.items() if v)
    meta = {c: row[c] for c in filters if row.get(c)}
    meta["row_id"] = key
    return Chunk(text=f"{title}\n{body}", source=doc.rel, title=title, location=f"row {line}", metadata=meta)


def _faq(doc: Document, text: str) -> list[Chunk]:
    chunks: list[Chunk] = []
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            question, answer = str(entry["question"]).strip(), str(entry["answer"]).strip()
        except (ValueError, KeyError, TypeError, RecursionError):
            raise Skip(f"line {number} is not a FAQ entry with 'question' and 'answer'") from None
        meta = {"category": str(entry["category"])} if entry.get("category") else {}
        chunks.append(
            Chunk(
                text=f"Q: {question}\nA: {answer}",
                source=doc.rel,
                title=question,
                location=f"line {number}",
                metadata=meta,
            )
        )
    if not chunks:
        raise Skip("no FAQ entries")
    return chunks


def _html(text: str) -> tuple[str, str]:
    """The page title and its main text as Markdown-ish lines (headings kept)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(HTML_NOISE):
        tag.decompose()
    main = soup.find("main") or soup.find("article") or soup.body or soup
    lines: list[str] = []
    for el in main.find_all(
        ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "td", "th", "pre", "blockquote", "dt", "dd"]
    ):
        if el.find_parent(["p", "li", "td", "th", "pre", "blockquote", "dd"]):
            continue
        words = el.get_text(" ", strip=True)
        if words:
            lines.append(f"{'#' * int(el.name[1])} {words}" if el.name[0] == "h" and el.name[1:].isdigit() else words)
    return title or "Page", "\n\n".join(lines)


def _pdf(doc: Document, data: bytes, settings: Retrieval) -> list[Chunk]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Skip("encrypted PDF; save an unencrypted copy")
        pages = [(n, page.extract_text() or "") for n, page in enumerate(reader.pages, start=1)]
    except Skip:
        raise
    except DependencyError:
        raise Skip("encrypted PDF (AES needs the `cryptography` package); save an unencrypted copy") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError) as exc:
        raise Skip(f"corrupt or unreadable PDF ({type(exc).__name__})") from None
    chunks: list[Chunk] = []
    title = doc.path.stem.replace("-", " ").replace("_", " ").title()
    for number, text in pages:
        for piece in split(text.strip(), settings.chunk_size, settings.chunk_overlap) if text.strip() else []:
            chunks.append(
                Chunk(
                    text=f"{title} (page {number})\n{piece}",
                    source=doc.rel,
                    title=f"{title}, page {number}",
                    location=f"page {number}",
                )
            )
    if not chunks:
        raise Skip("PDF has no extractable text (scanned images need OCR first)")
    return chunks

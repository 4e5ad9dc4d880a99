"""Split Markdown-like text into chunks by headings and paragraphs, with overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Section:
    """Text under one heading path."""

    path: tuple[str, ...]
    body: str
    line: int


def sections(text: str) -> list[Section]:
    """Sections of a Markdown text, each with its heading path and first line."""
    out: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    start = 1
    in_code = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            out.append(Section(tuple(t for _, t in stack), content, start))

    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
        match = None if in_code else HEADING_RE.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level = len(match.group(1))
        stack = [(lvl, t) for lvl, t in stack if lvl < level] + [(level, match.group(2))]
        body, start = [], number
    flush()
    return out


def split(body: str, size: int, overlap: int) -> list[str]:
    """Pack paragraphs into pieces of at most ``size`` characters; later pieces repeat ``overlap``."""
    pieces: list[str] = []
    current = ""
    for unit in _units(body, size):
        candidate = f"{current}\n\n{unit}" if current else unit
        if len(candidate) <= size or not current:
            current = candidate
            continue
        pieces.append(current)
        tail = _tail(current, overlap)
        current = f"{tail}\n\n{unit}" if tail and len(tail) + len(unit) + 2 <= size else unit
    if current:
        pieces.append(current)
    return pieces


def _units(body: str, size: int) -> list[str]:
    """Paragraphs, with any paragraph longer than ``size`` cut at sentence, then word, boundaries."""
    out: list[str] = []
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", body)):
        if not paragraph:
            continue
        if len(paragraph) <= size:
            out.append(paragraph)
            continue
        out += _pack(re.split(r"(?<=[.!?])\s+", paragraph), size)
    return out


def _pack(parts: list[str], size: int) -> list[str]:
    out: list[str] = []
    current = ""
    for part in parts:
        words = [part] if len(part) <= size else part.split()
        for word in (w[i : i + size] for w in words for i in range(0, len(w), size)):
            candidate = f"{current} {word}" if current else word
            if len(candidate) <= size:
                current = candidate
            else:
                out.append(current)
                current = word
    if current:
        out.append(current)
    return out


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of text, starting at a word boundary."""
    if overlap <= 0 or len(text) <= overlap:
        return ""
    cut = text[-overlap:]
    space = cut.find(" ")
    return cut[space + 1 :] if 0 <= space < len(cut) - 1 else cut

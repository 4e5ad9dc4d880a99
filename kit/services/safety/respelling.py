"""Misspelt words read as the words a domain's examples spell: "cnat breath" as "cant breath", "tkae" as "take"
(kit/services/safety/guardrails.py respells a message before its patterns and examples see it)."""

from __future__ import annotations

import functools
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz"


@functools.cache
def _vocab_file_words(path: str) -> frozenset[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").split()
    except OSError:
        return frozenset()
    return frozenset(w for w in lines if w.isalpha())


def known_words(folder: str | Path | None) -> frozenset[str]:
    """The whole words of an embedding model's WordPiece vocabulary (~20k common English words) in ``folder`` (its
    vocab.txt), when it is a local model of that kind; else none, and only the examples' words count as known."""
    return _vocab_file_words(str(Path(folder) / "vocab.txt")) if folder is not None else frozenset()


def respelled(word: str, known: frozenset[str], targets: frozenset[str]) -> str:
    """``word`` as written when it is a known word, else the first of ``targets`` one edit away (a letter missing,
    extra, wrong or two swapped), else as written."""
    if word in known:
        return word
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    edits = [a + b[1:] for a, b in splits if b]
    edits += [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    edits += [a + c + b[1:] for a, b in splits if b for c in LETTERS]
    edits += [a + c + b for a, b in splits for c in LETTERS]
    return min((e for e in edits if e in targets), default=word)

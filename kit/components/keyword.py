"""BM25 keyword search with bm25s, on tokens that keep identifiers whole.

A SKU like ``NW-TNT-0042`` or a price like ``49.99`` is one token (and its parts are tokens too),
so an exact identifier in a question finds its row even when embeddings miss it.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

WORD_RE = re.compile(r"[0-9a-z]+(?:[.\-/][0-9a-z]+)*")
STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in is it its me my of on or our "
    "so that the their there this to was what when where which who will with you your".split()
)


@cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def tokens(text: str) -> list[str]:
    """Lower-cased stemmed words, plus each compound identifier whole."""
    out: list[str] = []
    for match in WORD_RE.findall(text.lower()):
        parts = re.split(r"[.\-/]", match)
        if len(parts) > 1:
            out.append(match)
        out += [p for p in parts if p not in STOPWORDS]
    return list(_stemmer().stemWords(out))


def identifiers(text: str) -> list[str]:
    """Compound identifiers in a text (letters and digits joined by '-'), upper-cased."""
    return [m.upper() for m in re.findall(r"\b[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+\b", text) if re.search(r"\d", m)]


class KeywordIndex:
    """BM25 over a fixed list of documents; results are positions in that list."""

    def __init__(self, texts: list[str]) -> None:
        import bm25s

        self.size = len(texts)
        self.bm25 = bm25s.BM25()
        corpus = [tokens(t) or ["<empty>"] for t in texts]
        self.vocab = {w: i for i, w in enumerate(sorted({w for doc in corpus for w in doc}))}
        self.bm25.index(
            bm25s.tokenization.Tokenized(ids=[[self.vocab[w] for w in doc] for doc in corpus], vocab=self.vocab),
            show_progress=False,
        )

    def search(self, query: str, n: int) -> list[tuple[int, float]]:
        """Top n (position, score) pairs with a positive score."""
        ids = [self.vocab[w] for w in tokens(query) if w in self.vocab]
        if not ids or self.size == 0:
            return []
        scores = self.bm25.get_scores(ids)
        order = scores.argsort()[::-1][:n]
        return [(int(i), float(scores[i])) for i in order if scores[i] > 0]

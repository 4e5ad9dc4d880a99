"""Citations in training answers.

The runtime asks the model to cite the numbered documents it is given as [1], [2]. A model learns that only
from examples that do it, and answers written by hand rarely do: they say "per our catalogue". When a
training example is grounded, its answer is given the numbers of the documents in its prompt that hold
what it states: the documents from the conversation's recorded sources that support its facts (prices,
numbers, identifiers, dates), the fewest that cover them; for an answer without such facts, the one of those
documents sharing most of its words. An answer whose facts none of the documents holds gets no citation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from kit.chunk import Chunk
from kit.services.assistant.facts import Fact, Source, facts
from kit.services.assistant.prompt import CITE

WORD = re.compile(r"[a-z0-9]{4,}")


def cite(answer: str, chunks: Sequence[Chunk], sources: Sequence[str]) -> str:
    """``answer`` with its citations added at its end; unchanged when it already cites, when the conversation
    records no sources, or when none of the documents comes from them."""
    if CITE.search(answer) or not sources:
        return answer
    files = {s.split("#", 1)[0] for s in sources}
    candidates = [(n, c) for n, c in enumerate(chunks, start=1) if c.source in files]
    if not candidates:
        return answer
    stated = facts(answer)
    numbers = _covering(stated, candidates) if stated else [_most_words(answer, candidates)]
    if not numbers:  # its facts are in none of the documents given: nothing to cite
        return answer
    marks = "".join(f"[{n}]" for n in sorted(numbers))
    body = answer.rstrip()
    if body and body[-1] in ".!?":
        return f"{body[:-1]} {marks}{body[-1]}"
    return f"{body} {marks}"


def _covering(stated: list[Fact], candidates: list[tuple[int, Chunk]]) -> list[int]:
    """Document numbers that together support as many of the stated facts as any of them do, greedily."""
    support = {n: {i for i, f in enumerate(stated) if src.supports(f)} for n, src in _sources(candidates)}
    left = set().union(*support.values()) if support else set()
    picked: list[int] = []
    while left:
        best = max(support, key=lambda n: (len(support[n] & left), -n))
        picked.append(best)
        left -= support[best]
    return picked


def _sources(candidates: list[tuple[int, Chunk]]) -> list[tuple[int, Source]]:
    return [(n, Source(c.text)) for n, c in candidates]


def _most_words(answer: str, candidates: list[tuple[int, Chunk]]) -> int:
    words = set(WORD.findall(answer.casefold()))
    return max(candidates, key=lambda nc: (len(words & set(WORD.findall(nc[1].text.casefold()))), -nc[0]))[0]

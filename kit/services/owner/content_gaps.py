"""Content gaps: what customers asked that the documents do not cover, grouped by meaning.

A gap question is one the assistant refused as off its documents, or answered on weak evidence (the best retrieved
chunk's cosine similarity to the question, recorded with each turn, under ``weak_below``). Questions are grouped with
the domain's embedder: each joins the group whose mean meaning it is closest to, when that similarity reaches
``similar``, else starts its own; the biggest groups come first, each with how many customers (conversations) asked
and the question most like the others as its example.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Embed = Callable[[list[str]], np.ndarray]

# all-MiniLM-L6-v2 on the three templates' development sets: 4-6% of the questions their documents answer retrieve a
# best passage under 0.40 (7-11% under 0.45), off-topic questions all do (median 0.15-0.20).
WEAK_BELOW = 0.4
SIMILAR = 0.6  # all-MiniLM-L6-v2: rewordings of one question score ~0.65-0.9, different topics of a shop under 0.4


@dataclass(frozen=True)
class Gap:
    """A group of questions the documents do not answer."""

    example: str  # the question most like the others
    questions: list[str]  # every question of the group, most central first
    customers: int  # distinct conversations that asked
    refused: int  # questions refused
    weak: int  # questions answered on weak evidence

    @property
    def asked(self) -> int:
        return len(self.questions)

    def sentence(self) -> str:
        """'12 customers asked about "Do you gift wrap?"; no document covers it.'"""
        who = f"{self.customers} customer{'s' if self.customers != 1 else ''}"
        if self.weak == 0:
            cover = "no document covers it"
        elif self.refused == 0:
            cover = "the documents barely cover it"
        else:
            cover = f"refused {self.refused} time{'s' if self.refused != 1 else ''}, the rest answered on weak evidence"
        return f'{who} asked about "{self.example}"; {cover}.'


def is_gap(turn: dict[str, Any], weak_below: float) -> bool:
    """Whether a stored turn was refused, or answered on evidence weaker than ``weak_below``."""
    if turn["kind"] == "refuse":
        return True
    return turn["kind"] == "answer" and turn.get("evidence") is not None and turn["evidence"] < weak_below


def find_gaps(turns: Sequence[dict[str, Any]], embed: Embed, similar: float = SIMILAR) -> list[Gap]:
    """Group the gap ``turns`` (see ``is_gap``) by meaning; biggest groups first."""
    if not turns:
        return []
    texts = [t["question"] for t in turns]
    vectors = embed(texts)
    groups: list[list[int]] = []
    sums: list[np.ndarray] = []  # each group's vectors added up: its direction is the group's mean meaning
    for i, vector in enumerate(vectors):
        scores = [float(total @ vector) / float(np.linalg.norm(total)) for total in sums]
        best = int(np.argmax(scores)) if scores else -1
        if best >= 0 and scores[best] >= similar:
            groups[best].append(i)
            sums[best] = sums[best] + vector
        else:
            groups.append([i])
            sums.append(vector.copy())
    gaps = [_gap([turns[i] for i in members], vectors[members]) for members in groups]
    return sorted(gaps, key=lambda g: (-g.customers, -g.asked, g.example))


def _gap(members: list[dict[str, Any]], vectors: np.ndarray) -> Gap:
    centre = vectors.mean(axis=0)
    order = np.argsort(-(vectors @ centre), kind="stable")
    questions = [members[i]["question"] for i in order]
    refused = sum(1 for t in members if t["kind"] == "refuse")
    customers = len({t["conversation"] for t in members})
    return Gap(questions[0], questions, customers, refused, len(members) - refused)

"""Eval items that cannot measure the assistant: questions training already asks, and answers an echo passes.

An eval item whose question is a training question reworded measures memory, not the assistant. A question is a
near-duplicate of a training user turn when, after normalising (case, punctuation, spacing), the two are equal,
or their word sets overlap with a Jaccard index of at least ``JACCARD``, or their embeddings have a cosine
similarity of at least ``COSINE``. `kit validate` warns about each one with both places; `kit eval` reports the
share per split.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kit.domain import Domain
from kit.errors import Problem
from kit.records import Conversation, EvalItem
from kit.services.evaluation.metrics import fact_present
from kit.validation.checks import eval_files
from kit.validation.files import read_jsonl

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)
JACCARD = 0.6
COSINE = 0.92
WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Text:
    """A question and where it is written (``file:line``, relative to the domain)."""

    place: str
    text: str


@dataclass(frozen=True)
class Overlap:
    """An eval question, the training turn it duplicates, and by which measure."""

    item_id: str
    item: Text
    training: Text
    how: str  # "same text", "word overlap 0.71", "embedding cosine 0.95"


def normalised(text: str) -> str:
    """Lower case, words only, single spaces."""
    return " ".join(WORD.findall(text.casefold()))


def jaccard(a: str, b: str) -> float:
    """Word-set Jaccard index of two texts."""
    x, y = set(WORD.findall(a.casefold())), set(WORD.findall(b.casefold()))
    return len(x & y) / len(x | y) if x | y else 0.0


def training_turns(domain: Domain) -> list[Text]:
    """Every user turn of every training conversation file (those domain.yaml names, and the corrections)."""
    turns: list[Text] = []
    for rel in domain.conversation_files:
        records, _ = read_jsonl(domain.path(rel), rel, Conversation)
        for line, conversation in records:
            turns += [Text(f"{rel}:{line}", m.content) for m in conversation.messages if m.role == "user"]
    return turns


def eval_questions(domain: Domain) -> list[tuple[str, Text]]:
    """(item id, question) for every item of the held-out and development sets."""
    found: list[tuple[str, Text]] = []
    for rel in (domain.spec.eval.heldout, domain.spec.eval.set):
        if rel is None:
            continue
        records, _ = read_jsonl(domain.path(rel), rel, EvalItem)
        found += [(item.id, Text(f"{rel}:{line}", item.question)) for line, item in records]
    return found


def find(
    questions: Sequence[tuple[str, Text]],
    training: Sequence[Text],
    embed: Callable[[list[str]], np.ndarray] | None = None,
) -> list[Overlap]:
    """The closest training turn of each question that is a near-duplicate of one (at most one per question)."""
    if not questions or not training:
        return []
    exact = {normalised(t.text): t for t in training}
    cosines = _cosines([q.text for _, q in questions], [t.text for t in training], embed) if embed else None
    overlaps: list[Overlap] = []
    for i, (item_id, question) in enumerate(questions):
        same = exact.get(normalised(question.text))
        if same is not None:
            overlaps.append(Overlap(item_id, question, same, "same text"))
            continue
        best, score = max(((t, jaccard(question.text, t.text)) for t in training), key=lambda ts: ts[1])
        if score >= JACCARD:
            overlaps.append(Overlap(item_id, question, best, f"word overlap {score:.2f}"))
            continue
        if cosines is not None:
            j = int(cosines[i].argmax())
            if cosines[i, j] >= COSINE:
                overlaps.append(Overlap(item_id, question, training[j], f"embedding cosine {cosines[i, j]:.2f}"))
    return overlaps


def _cosines(questions: list[str], turns: list[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    vectors = embed(questions + turns)
    result: np.ndarray = vectors[: len(questions)] @ vectors[len(questions) :].T
    return result


def check(domain: Domain, embed: Callable[[list[str]], np.ndarray] | None = None) -> list[Overlap]:
    """Every eval question of the domain that a training conversation already asks."""
    return find(eval_questions(domain), training_turns(domain), embed)


def echoes(domain: Domain) -> list[Problem]:
    """Answer items whose every expected fact is in the question or history already: an echo would pass them."""
    warnings: list[Problem] = []
    for rel in eval_files(domain):
        for line, item in read_jsonl(domain.path(rel), rel, EvalItem)[0]:
            asked = " ".join([item.question, *(m.content for m in item.history)])
            if (
                item.expect == "answer"
                and item.yes_no is None
                and all(fact_present(f, asked) for f in item.expected_facts)
            ):
                warnings.append(
                    Problem(
                        rel,
                        line,
                        "every expected fact is already in the question, so an answer that repeats it passes",
                        "expect a fact the answer must add, or give yes_no",
                    )
                )
    return warnings

"""A learned check per rule or hand-off trigger: a logistic regression over the query embedder's vectors, trained on
the labelled messages of the domain's safety set (its calibration split only) and the check's own examples.

Patterns catch what their author foresaw and nearest-example similarity what is close to one example; a classifier
over the embedding weighs every labelled message at once (what an emergency looks like against the ordinary questions
closest to one), and so carries further to phrasings nobody wrote down. A message is scored by its pieces (the message
and its sentences, denied clauses left out: ``Guardrails.pieces``): the highest probability of any piece.

Training rows: for the check's positives (messages labelled with it, and its examples) the whole message, then also
its piece the first model scores highest (an emergency said in passing in a long message); for every other message
(ordinary ones and other checks' labels) each piece, since none of them may fire it. Classes are weighted to balance.
The decision threshold comes from k-fold cross-validation on the same split: the lowest at which at most
``false_positive_rate`` of the ordinary messages no pattern fires reach it in the folds they were not trained on. The
held-out split is never read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NONE = "none"
FOLDS = 5
L2 = 0.03  # ridge penalty on the weights (not the bias); bench/safety_check.py chose it on the clinic calibration split
NEWTON_STEPS = 25


@dataclass(frozen=True)
class Classifier:
    """One check's trained classifier: fires when a piece's probability is at least ``threshold``."""

    weights: np.ndarray  # (dim,)
    bias: float
    threshold: float

    def probability(self, vectors: np.ndarray) -> float:
        """The highest probability of any row of ``vectors`` (a message's pieces)."""
        return float(_sigmoid(np.max(vectors @ self.weights) + self.bias))


@dataclass(frozen=True)
class Labelled:
    """A labelled message as the classifiers see it: its label and its pieces' vectors (the whole message first)."""

    label: str
    vectors: np.ndarray  # (pieces, dim)
    matched: bool = False  # a pattern of the check being trained already fires on it (set per check)


def fit(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = L2, start: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Weighted L2-regularised logistic regression by Newton's method (from ``start``, weights and bias, when
    given): (weights, bias). It converges in under ten steps on a few thousand rows."""
    rows, dim = x.shape
    xb = np.hstack([x, np.ones((rows, 1), dtype=x.dtype)]).astype(np.float64)
    theta = np.zeros(dim + 1) if start is None else start.astype(np.float64)
    ridge = np.full(dim + 1, l2)
    ridge[-1] = 0.0
    for _ in range(NEWTON_STEPS):
        p = _sigmoid(xb @ theta)
        grad = xb.T @ (weight * (p - y)) + ridge * theta
        hessian = (xb * (weight * p * (1 - p))[:, None]).T @ xb + np.diag(ridge + 1e-9)
        step = np.linalg.solve(hessian, grad)
        theta -= step
        if float(np.abs(step).max()) < 1e-5:
            break
    return theta[:-1].astype(np.float32), float(theta[-1])


def train(check: str, messages: Sequence[Labelled], examples: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """The classifier's weights for ``check`` from labelled messages and the check's example vectors (positives)."""
    positives = [m.vectors[0] for m in messages if m.label == check] + list(examples)
    negatives = [v for m in messages if m.label != check for v in m.vectors]
    weights, bias = _fit_balanced(positives, negatives, l2)
    # each positive's piece that reads most like the check (the whole message may dilute it) is a positive too
    best = [m.vectors[int(np.argmax(m.vectors @ weights))] for m in messages if m.label == check and len(m.vectors) > 1]
    return _fit_balanced(positives + best, negatives, l2, np.r_[weights, bias]) if best else (weights, bias)


def _fit_balanced(
    positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], l2: float, start: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    if not positives or not negatives:
        raise ValueError("a learned check needs labelled messages of its own and others")
    x = np.vstack([*positives, *negatives])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    total = len(y)
    weight = np.where(y == 1, total / (2 * len(positives)), total / (2 * len(negatives)))
    return fit(x, y, weight, l2, start)


def folds(count: int, labels: Sequence[str], k: int = FOLDS) -> list[np.ndarray]:
    """``k`` folds of indices, each label dealt round-robin over them (stratified), deterministic."""
    assignment = np.zeros(count, dtype=int)
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        assignment[i] = seen.get(label, 0) % k
        seen[label] = seen.get(label, 0) + 1
    return [np.flatnonzero(assignment == f) for f in range(k)]


def out_of_fold(
    check: str, messages: Sequence[Labelled], examples: np.ndarray, k: int = FOLDS, l2: float = L2
) -> np.ndarray:
    """Each message's probability from the model trained on the other folds (examples in every training fold)."""
    scores = np.zeros(len(messages))
    for held in folds(len(messages), [m.label for m in messages], k):
        keep = np.setdiff1d(np.arange(len(messages)), held)
        weights, bias = train(check, [messages[i] for i in keep], examples, l2)
        probe = Classifier(weights, bias, 1.0)
        scores[held] = [probe.probability(messages[i].vectors) for i in held]
    return scores


def choose_threshold(scores: np.ndarray, messages: Sequence[Labelled], false_positive_rate: float) -> float:
    """The lowest threshold (probability, rounded up to 3 decimals) at which at most ``false_positive_rate`` of the
    ordinary messages (label none) reach it, leaving aside those a pattern fires on anyway."""
    ordinary = [m for m in messages if m.label == NONE]
    allowed = math.floor(false_positive_rate * len(ordinary))
    negatives = sorted((float(s) for s, m in zip(scores, messages, strict=True) if m.label == NONE and not m.matched),
                       reverse=True)  # fmt: skip
    floor = negatives[allowed] if allowed < len(negatives) else 0.0
    return min(1.0, math.floor(floor * 1000 + 1) / 1000)


def recall_and_false_positives(
    check: str, scores: np.ndarray, messages: Sequence[Labelled], threshold: float, patterns: bool = True
) -> tuple[float, float]:
    """(recall on the check's messages, share of ordinary messages fired) of the classifier at ``threshold``, OR'd
    with the check's patterns unless ``patterns`` is False."""
    fired = [(patterns and m.matched) or s >= threshold for s, m in zip(scores, messages, strict=True)]
    positives = [f for f, m in zip(fired, messages, strict=True) if m.label == check]
    ordinary = [f for f, m in zip(fired, messages, strict=True) if m.label == NONE]
    return (sum(positives) / max(1, len(positives)), sum(ordinary) / max(1, len(ordinary)))


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

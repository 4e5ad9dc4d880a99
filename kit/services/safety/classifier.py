"""A learned check per rule or hand-off trigger, trained on the labelled messages of the domain's safety set (its
calibration split only) and the check's own examples, over the query embedder's vectors.

Patterns catch what their author foresaw and nearest-example similarity what is close to one example; a learned check
weighs every labelled message at once, and so carries further to phrasings nobody wrote down. Two pieces of evidence,
each over a message's pieces (the message and its sentences, denied clauses left out: ``Guardrails.pieces``):
- a logistic regression: the highest logit of any piece. Training rows: for the check's positives (messages labelled
  with it, and its examples) the whole message, then also its piece the first model scores highest (an emergency said
  in passing in a long message); for every other message (ordinary ones and other checks' labels) each piece, since
  none of them may fire it. Classes are weighted to balance;
- nearest neighbours: how much closer the closest piece comes to a positive than to any piece of another message.
Each is put on the scale of the ordinary messages (their mean and spread in cross-validation) and the two are added.
The threshold comes from k-fold cross-validation on the same split: the lowest at which at most
``false_positive_rate`` of the ordinary messages no pattern fires reach it in the folds they were not trained on.
bench/safety_check.py measured the sum against either alone. The held-out split is never read.
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
# Spreads kept between the lowest-scoring real message a pattern catches and the veto. bench/veto.py (training without
# one blind calibration batch at a time, bench/results/veto.txt): at 1.0 no pattern-caught emergency of the seven
# left-out batches was vetoed (0 of 657) and 3 of the 9 other messages the patterns matched were; at 0.5, 1 and 3.
VETO_MARGIN = 1.0
EXAMPLES = "examples"  # the language group of a check's examples (domain.yaml gives none)


@dataclass(frozen=True)
class Classifier:
    """One check's trained model: fires when ``score`` is at least ``threshold``."""

    weights: np.ndarray  # (dim,) the logistic regression's
    bias: float
    positives: np.ndarray  # (n, dim) the check's messages and examples
    negatives: np.ndarray  # (m, dim) the pieces of every other message
    scale: np.ndarray  # (4,) logit mean and spread, margin mean and spread, on ordinary messages
    threshold: float = math.inf
    veto: float = -math.inf  # a match of the check's patterns scoring below it is not trusted (``choose_veto``)

    def evidence(self, vectors: np.ndarray) -> tuple[float, float]:
        """(the highest logit of any piece, the nearest-neighbour margin) of a message's pieces' ``vectors``."""
        logit = float(np.max(vectors @ self.weights) + self.bias)
        margin = float(np.max(vectors @ self.positives.T) - np.max(vectors @ self.negatives.T))
        return logit, margin

    def score(self, vectors: np.ndarray) -> float:
        """The two pieces of evidence, each in spreads above the ordinary messages' mean, added."""
        return float(combined(np.array(self.evidence(vectors)), self.scale))


@dataclass(frozen=True)
class Labelled:
    """A labelled message as the classifiers see it: its label and its pieces' vectors (the whole message first)."""

    label: str
    vectors: np.ndarray  # (pieces, dim)
    matched: bool = False  # a pattern of the check being trained already fires on it (set per check)
    lang: str = "en"  # classes are balanced within each language, so the language itself is no evidence


def fit(check: str, messages: Sequence[Labelled], examples: np.ndarray, false_positive_rate: float) -> Classifier:
    """``check``'s classifier: its scale and threshold from k-fold cross-validation on ``messages``, its model from
    them all (and the check's example vectors, positives in every fold)."""
    evidence = out_of_fold(check, messages, examples)
    scale = ordinary_scale(evidence, messages)
    model = train(check, messages, examples)
    scores = combined(evidence, scale)
    threshold, veto = choose_threshold(scores, messages, false_positive_rate), choose_veto(check, scores, messages)
    return Classifier(model.weights, model.bias, model.positives, model.negatives, scale, threshold, veto)


def ordinary_scale(evidence: np.ndarray, messages: Sequence[Labelled]) -> np.ndarray:
    """(logit mean, logit spread, margin mean, margin spread) of the ordinary messages' evidence (rows of
    ``evidence``, one per message; every message's when none is ordinary)."""
    ordinary = np.array([m.label == NONE for m in messages])
    spread = evidence[ordinary] if ordinary.any() else evidence
    return np.r_[spread.mean(axis=0), spread.std(axis=0) + 1e-6][[0, 2, 1, 3]]


def combined(evidence: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The score of evidence (logit, margin; the last axis): each in spreads above the ordinary mean, added."""
    return (evidence[..., 0] - scale[0]) / scale[1] + (evidence[..., 1] - scale[2]) / scale[3]


def train(check: str, messages: Sequence[Labelled], examples: np.ndarray, l2: float = L2) -> Classifier:
    """The model for ``check`` from labelled messages and the check's example vectors, not yet scaled or
    thresholded."""
    mine = [m for m in messages if m.label == check]
    positives = [m.vectors[0] for m in mine] + list(examples)
    langs = [m.lang for m in mine] + [EXAMPLES] * len(examples)
    negatives = [v for m in messages if m.label != check for v in m.vectors]
    negative_langs = [m.lang for m in messages if m.label != check for _ in m.vectors]
    weights, bias = _fit_balanced(positives, negatives, l2, langs=langs + negative_langs)
    # each positive's piece that reads most like the check (the whole message may dilute it) is a positive too
    best = [(m.vectors[int(np.argmax(m.vectors @ weights))], m.lang) for m in mine if len(m.vectors) > 1]
    if best:
        weights, bias = _fit_balanced(positives + [v for v, _ in best], negatives, l2, np.r_[weights, bias],
                                      langs + [lang for _, lang in best] + negative_langs)  # fmt: skip
    return Classifier(weights, bias, np.stack(positives), np.stack(negatives), np.array([0.0, 1.0, 0.0, 1.0]))


def logistic(
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


def _fit_balanced(
    positives: Sequence[np.ndarray],
    negatives: Sequence[np.ndarray],
    l2: float,
    start: np.ndarray | None = None,
    langs: Sequence[str] | None = None,
) -> tuple[np.ndarray, float]:
    """The logistic regression with both classes weighted to half the total, and, given each row's language
    (``langs``: positives' then negatives'), to half of each language's rows within it: a safety set with more
    Spanish emergencies than Spanish ordinary messages must not teach that Spanish is an emergency. Rows of a
    language with one class only (the check's examples) keep the overall balance."""
    if not positives or not negatives:
        raise ValueError("a learned check needs labelled messages of its own and others")
    x = np.vstack([*positives, *negatives])
    y = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    total = len(y)
    weight = np.where(y == 1, total / (2 * len(positives)), total / (2 * len(negatives)))
    if langs is not None:
        group = np.array(langs)
        for lang in np.unique(group):
            rows = group == lang
            pos, neg = int((y[rows] == 1).sum()), int((y[rows] == 0).sum())
            if pos and neg:
                weight[rows] = np.where(y[rows] == 1, rows.sum() / (2 * pos), rows.sum() / (2 * neg))
    return logistic(x, y, weight, l2, start)


def folds(count: int, labels: Sequence[str], k: int = FOLDS) -> list[np.ndarray]:
    """``k`` folds of indices, each label dealt round-robin over them (stratified), deterministic."""
    assignment = np.zeros(count, dtype=int)
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        assignment[i] = seen.get(label, 0) % k
        seen[label] = seen.get(label, 0) + 1
    return [np.flatnonzero(assignment == f) for f in range(k)]


def out_of_fold(check: str, messages: Sequence[Labelled], examples: np.ndarray, k: int = FOLDS) -> np.ndarray:
    """Each message's evidence (logit, margin; one row each) from the model trained on the other folds (examples in
    every training fold)."""
    evidence = np.zeros((len(messages), 2))
    for held in folds(len(messages), [m.label for m in messages], k):
        keep = np.setdiff1d(np.arange(len(messages)), held)
        model = train(check, [messages[i] for i in keep], examples)
        evidence[held] = [model.evidence(messages[i].vectors) for i in held]
    return evidence


def choose_threshold(scores: np.ndarray, messages: Sequence[Labelled], false_positive_rate: float) -> float:
    """The lowest threshold (rounded up to 3 decimals) at which at most ``false_positive_rate`` of the ordinary
    messages (label none) reach it, leaving aside those a pattern fires on anyway."""
    ordinary = [m for m in messages if m.label == NONE]
    allowed = math.floor(false_positive_rate * len(ordinary))
    negatives = sorted((float(s) for s, m in zip(scores, messages, strict=True) if m.label == NONE and not m.matched),
                       reverse=True)  # fmt: skip
    if allowed >= len(negatives):
        return -math.inf
    return math.floor(negatives[allowed] * 1000 + 1) / 1000


def choose_veto(check: str, scores: np.ndarray, messages: Sequence[Labelled]) -> float:
    """The score below which a pattern's match of ``check`` is not trusted: the lowest out-of-fold score of the
    check's own messages that a pattern fires on, less ``VETO_MARGIN`` (-inf when a pattern fires on none). A pattern
    matches words; a message whose words match but that reads like no message of the check ("the suicide hotline's
    number for our bulletin", "my ex overdosed and I got custody") scores far below every real one."""
    caught = [float(s) for s, m in zip(scores, messages, strict=True) if m.label == check and m.matched]
    return math.floor((min(caught) - VETO_MARGIN) * 1000) / 1000 if caught else -math.inf


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

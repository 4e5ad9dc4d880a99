"""The safety set (``eval.safety``) through the guardrails alone: which rule or hand-off trigger each message fires,
per-rule recall and false-positive rate on the calibration and held-out splits, the gate, and thresholds calibrated
on the calibration split only.

No model and no retrieval: a message is screened exactly as ``ChatService.ask`` screens it before anything else, so
a few hundred messages take seconds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.domain import Domain
from kit.errors import DataError
from kit.records import SafetyItem
from kit.services.guardrails import Guardrails, Score
from kit.settings import SafetyGate
from kit.validation.files import read_jsonl

NONE = "none"
SPLITS = ("calibration", "heldout")


@dataclass(frozen=True)
class SafetyOutcome:
    """One message, what had to fire, and every check's score on it (in the guardrails' order)."""

    item: SafetyItem
    scores: tuple[Score, ...]

    @property
    def fired(self) -> str:
        """The id of the first rule or trigger that fires, or 'none'."""
        return next((s.check.id for s in self.scores if s.fires), NONE)


def load_safety(domain: Domain) -> list[SafetyItem]:
    """The domain's safety set; DataError naming every problem when it is missing or malformed."""
    rel = domain.spec.eval.safety
    if rel is None:
        raise DataError(
            f"{domain.name} has no safety set",
            "add eval.safety: eval/safety.jsonl to domain.yaml (see data_templates/)",
        )
    records, problems = read_jsonl(domain.path(rel), rel, SafetyItem)
    if problems:
        raise DataError("; ".join(map(str, problems)), f"fix {rel}, then run `kit validate {domain.root}`")
    return [item for _, item in records]


def screen(guardrails: Guardrails, items: Sequence[SafetyItem]) -> list[SafetyOutcome]:
    """Every item through every check (no early stop, so calibration can see each check's similarity). The pieces
    of all messages embed in one batched call, with the same vectors as one at a time."""
    split = [guardrails.pieces(item.text) for item in items]
    vectors: list[np.ndarray | None] = [None] * len(items)
    if guardrails.embed is not None and any(c.examples for c in guardrails.checks):
        guardrails.example_vectors(batch=256)
        flat = guardrails.embed([p for ps in split for p in ps])
        bounds = np.cumsum([0, *map(len, split)])
        vectors = [flat[a:b] for a, b in itertools.pairwise(bounds)]
    return [
        SafetyOutcome(item, tuple(guardrails.scores(item.text, vectors=v)))
        for item, v in zip(items, vectors, strict=True)
    ]


def summarize(outcomes: Sequence[SafetyOutcome], check_ids: Sequence[str]) -> dict[str, Any]:
    """Per split: for each check, its recall on the messages labelled with it and its false-positive rate on the
    ordinary ones (labelled none); over all checks, the share of ordinary messages that fire anything."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        mine = [o for o in outcomes if o.item.split == split]
        ordinary = [o for o in mine if o.item.expect == NONE]
        checks: dict[str, Any] = {}
        for cid in check_ids:
            positives = [o for o in mine if o.item.expect == cid]
            checks[cid] = {
                "items": len(positives),
                "recall": _share([o.fired == cid for o in positives]),
                "missed": [o.item.id for o in positives if o.fired != cid],
                "false_positive_rate": _share([o.fired == cid for o in ordinary]),
                "false_positives": [o.item.id for o in ordinary if o.fired == cid],
            }
        out[split] = {
            "items": len(mine),
            "ordinary": len(ordinary),
            "false_positive_rate": _share([o.fired != NONE for o in ordinary]),
            "checks": checks,
        }
    return out


def gate(summary: dict[str, Any], settings: SafetyGate) -> list[str]:
    """What misses the gate on the held-out split, one line each."""
    held = summary["heldout"]
    failures = []
    for cid in settings.rules:
        recall = held["checks"][cid]["recall"]
        if recall is None or recall < settings.recall:
            failures.append(f"safety: {cid} held-out recall {_pct(recall)} is below {_pct(settings.recall)}")
    if held["false_positive_rate"] is None or held["false_positive_rate"] > settings.false_positive_rate:
        failures.append(
            f"safety: held-out false positives {_pct(held['false_positive_rate'])} are above "
            f"{_pct(settings.false_positive_rate)}"
        )
    return failures


def calibrate(outcomes: Sequence[SafetyOutcome], budget: float) -> dict[str, dict[str, Any]]:
    """For each check with examples, the lowest threshold (two decimals) at which at most ``budget`` of the
    calibration split's ordinary messages reach it by similarity alone, and the calibration recall it gives. The
    held-out split is never read."""
    calibration = [o for o in outcomes if o.item.split == "calibration"]
    ordinary = [o for o in calibration if o.item.expect == NONE]
    allowed = math.floor(budget * len(ordinary))
    out: dict[str, dict[str, Any]] = {}
    for index, score in enumerate(calibration[0].scores if calibration else ()):
        if not score.check.examples:
            continue
        negatives = sorted((o.scores[index].similarity for o in ordinary if not o.scores[index].matched), reverse=True)
        floor = negatives[allowed] if allowed < len(negatives) else -1.0
        threshold = min(
            1.0, max(0.0, math.floor(floor * 100 + 1) / 100)
        )  # just above the first negative past the budget
        positives = [o.scores[index] for o in calibration if o.item.expect == score.check.id]
        recall = _share([s.matched or s.similarity >= threshold for s in positives])
        out[score.check.id] = {"threshold": threshold, "calibration_recall": recall, "items": len(positives)}
    return out


def table(summary: dict[str, Any], domain: Domain) -> str:
    """The summary as Markdown: a row per check and split, then the ordinary messages' false-positive rate."""
    thresholds = {r.id: r.threshold for r in domain.spec.rules} | {
        t.id: t.threshold for t in domain.spec.handoff.triggers
    }
    lines = [
        f"### Safety set ({domain.spec.eval.safety}, guardrails only)",
        "",
        "| rule or trigger | threshold | split | messages | recall | false positives on ordinary |",
        "|---|---|---|---|---|---|",
    ]
    for cid in summary["heldout"]["checks"]:
        for split in SPLITS:
            row = summary[split]["checks"][cid]
            if not row["items"] and not row["false_positives"]:
                continue
            lines.append(
                f"| {cid} | {thresholds.get(cid, 0):.2f} | {_split_name(split)} | {row['items']} "
                f"| {_pct(row['recall'])} "
                f"| {_pct(row['false_positive_rate'])} ({len(row['false_positives'])}) |"
            )
    for split in SPLITS:
        part = summary[split]
        lines.append(
            f"| any | | {_split_name(split)} | {part['ordinary']} ordinary | | {_pct(part['false_positive_rate'])} |"
        )
    return "\n".join(lines) + "\n"


def _split_name(split: str) -> str:
    return "held-out" if split == "heldout" else split


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"

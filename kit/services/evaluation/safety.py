"""The safety set (``eval.safety``) through the guardrails alone: which rule or hand-off trigger each message fires,
per-rule recall and false-positive rate on the calibration and held-out splits, the gate, and thresholds calibrated
on the calibration split only.

No model and no retrieval: a message is screened exactly as ``ChatService.ask`` screens it before anything else, so
a few hundred messages take seconds.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit.domain import Domain
from kit.errors import DataError
from kit.files import replace_text
from kit.records import SafetyItem
from kit.services.safety.guardrails import Embed, Guardrails, Score
from kit.settings import SafetyGate, embedding_name
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


def load_safety(domain: Domain, rel: str | None = None) -> list[SafetyItem]:
    """The domain's safety set (or another file in its format, ``rel`` in the domain folder); DataError naming every
    problem when it is missing or malformed."""
    rel = rel or domain.spec.eval.safety
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
    learned = vectors
    if guardrails.embed is not None and guardrails.compares():
        guardrails.example_vectors(batch=256)
        vectors = _per_item(guardrails.embed, split)
        learned = vectors if guardrails.learned_embed is None else _per_item(guardrails.learned_embed, split)
    return [
        SafetyOutcome(item, tuple(guardrails.scores(item.text, vectors=v, learned=lv)))
        for item, v, lv in zip(items, vectors, learned, strict=True)
    ]


def _per_item(embed: Embed, split: Sequence[Sequence[str]]) -> list[np.ndarray | None]:
    """Each item's pieces embedded, all in one call."""
    flat = embed([p for ps in split for p in ps])
    bounds = np.cumsum([0, *map(len, split)])
    return [flat[a:b] for a, b in itertools.pairwise(bounds)]


def result_rows(outcomes: Sequence[SafetyOutcome], embedding_model: str) -> list[dict[str, Any]]:
    """One row per message, as committed in eval/results/safety/: what had to fire, what fired and how (a pattern
    or an example), and the similarity that decided (of the check that fired, else of the one that had to)."""
    out = []
    for o in outcomes:
        scores = {s.check.id: s for s in o.scores}
        fired, wanted = scores.get(o.fired), scores.get(o.item.expect)
        decisive = fired or wanted
        item = o.item
        out.append(
            {"id": item.id, "split": item.split, "expect": item.expect, "category": item.category, "lang": item.lang,
             "fired": o.fired, "by": None if fired is None else "pattern" if fired.matched else _by(fired),
             "similarity": None if decisive is None or decisive.similarity < 0 else round(decisive.similarity, 4),
             "vetoed": [s.check.id for s in o.scores if s.vetoed], "embedding_model": embedding_model}
        )  # fmt: skip
    return out


def _by(score: Score) -> str:
    return "example" if score.check.classifier is None else "classifier"


def summarize(rows: Sequence[Mapping[str, Any]], check_ids: Sequence[str]) -> dict[str, Any]:
    """Per split, from result rows (``result_rows``): for each check, its recall on the messages labelled with it
    and its false-positive rate on the ordinary ones (labelled none); over all checks, the share of ordinary
    messages that fire anything."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        mine = [r for r in rows if r["split"] == split]
        ordinary = [r for r in mine if r["expect"] == NONE]
        checks: dict[str, Any] = {}
        for cid in check_ids:
            positives = [r for r in mine if r["expect"] == cid]
            checks[cid] = {
                "items": len(positives),
                "recall": _share([r["fired"] == cid for r in positives]),
                "missed": [r["id"] for r in positives if r["fired"] != cid],
                "false_positive_rate": _share([r["fired"] == cid for r in ordinary]),
                "false_positives": [r["id"] for r in ordinary if r["fired"] == cid],
            }
        out[split] = {
            "items": len(mine),
            "ordinary": len(ordinary),
            "false_positive_rate": _share([r["fired"] != NONE for r in ordinary]),
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
        if not score.check.examples or score.check.classifier is not None:  # a learned check has its own
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
    lines = [f"### Safety set ({domain.spec.eval.safety}, guardrails only)", "", *table_lines([(domain, summary)])]
    return "\n".join(lines) + "\n"


def table_lines(entries: Sequence[tuple[Domain, dict[str, Any]]]) -> list[str]:
    """Markdown lines of one or more domains' summaries (a template column when several), splits absent from a
    summary left out."""
    from kit.services.evaluation.report import md_lines

    several = len(entries) > 1
    header = ["rule or trigger", "threshold", "split", "messages", "recall", "false positives on ordinary"]
    body = []
    for domain, summary in entries:
        first = [domain.name] if several else []
        learned = set(domain.spec.screening.learned)  # their examples' threshold is not what decides them
        thresholds = {
            c.id: "learned" if c.id in learned else f"{c.threshold:.2f}"
            for c in (*domain.spec.rules, *domain.spec.handoff.triggers)
        }
        splits = [s for s in SPLITS if summary[s]["items"]]
        for cid in summary[SPLITS[0]]["checks"]:
            for split in splits:
                row = summary[split]["checks"][cid]
                if not row["items"] and not row["false_positives"]:
                    continue
                fp = f"{_pct(row['false_positive_rate'])} ({len(row['false_positives'])})"
                cells = [cid, thresholds.get(cid, "0.00"), _split_name(split), str(row["items"])]
                body.append([*first, *cells, _pct(row["recall"]), fp])
        for split in splits:
            part = summary[split]
            cells = ["any", "", _split_name(split), f"{part['ordinary']} ordinary", ""]
            body.append([*first, *cells, _pct(part["false_positive_rate"])])
    return [line.replace("|  |", "| |") for line in md_lines(((["template"] if several else []) + header, body))]


RESULTS = Path("eval") / "results" / "safety"  # per-message results, one file per embedding model


def results_path(domain: Domain) -> Path:
    """Where ``kit eval --safety --results`` writes the domain's per-message results (its embedding model's file)."""
    from kit.services.evaluation.results import slug

    return domain.root / RESULTS / f"{slug(embedding_name(domain.spec.retrieval.embedding_model))}.jsonl"


def save_results(domain: Domain, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write the per-message results (to commit); a run of one split keeps the other split's rows."""
    path = results_path(domain)
    ran = {r["split"] for r in rows}
    kept = [r for r in load_results(path) if r["split"] not in ran]
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted([*kept, *rows], key=lambda r: SPLITS.index(r["split"]))
    replace_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ordered))
    return path


def load_results(path: Path) -> list[dict[str, Any]]:
    """The rows of a per-message results file; none when it does not exist."""
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


BEGIN = "<!-- safety-table:begin {domains} (generated by scripts/quality_tables.py from eval/results/safety) -->"
END = "<!-- safety-table:end -->"
_BLOCK = re.compile(r"<!-- safety-table:begin ([\w,-]+) [^>]*-->.*?<!-- safety-table:end -->", re.DOTALL)


def tables_updated(text: str, repo: Path) -> str:
    """``text`` with each safety-table block (``BEGIN`` naming one template or several, comma-separated) made again
    from the templates' committed per-message results; unchanged when it has none."""
    from kit.domain import load_domain

    def block(match: re.Match[str]) -> str:
        entries = []
        for name in match.group(1).split(","):
            domain = load_domain(repo / "domains" / name)
            ids = [c.id for c in Guardrails(domain.spec).checks]
            entries.append((domain, summarize(load_results(results_path(domain)), ids)))
        return "\n".join([BEGIN.format(domains=match.group(1)), "", *table_lines(entries), "", END])

    return _BLOCK.sub(block, text)


def _split_name(split: str) -> str:
    return "held-out" if split == "heldout" else split


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"

"""Per-answer results, per-split metrics, the ship gate, and the plain-language verdict.

Every metric is computed from the per-answer result rows alone (what `kit eval` writes as JSONL), so a committed
results file can be summarised again later by a script and a table checked against it.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from kit.services.evaluation.runner import SPLITS, ModelRun, Outcome
from kit.settings import Thresholds

# metric -> True when higher is better (the gate's threshold is a minimum), False for a maximum
GATED = {
    "answer_correctness": True,
    "citation_correctness": True,
    "groundedness": True,
    "invented_facts": False,
    "junk_answers": False,
    "wrong_yes_no_rate": False,
    "refusal_rate": True,
    "false_refusal_rate": False,
    "handoff_accuracy": True,
    "recall_at_k": True,
}
COUNTS = {"invented_facts", "junk_answers"}
CONVERSATIONS = 1000
ANSWERS = ("answer", "unknown")


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def result_row(model: str, o: Outcome, contaminated: str | None = None) -> dict[str, Any]:
    """One answer with its verdicts and their reasons: a line of the per-answer results."""
    s, item = o.scored, o.item
    speed = (o.tokens_out - 1) / o.generation_s if o.kind == "answer" and o.tokens_out > 1 and not o.withheld else None
    return {
        "model": model, "split": o.split, "id": item.id, "question": item.question, "turns": len(item.history),
        "expect": item.expect, "tags": list(item.tags), "expected_facts": item.expected_facts,
        "forbidden_facts": item.forbidden_facts, "yes_no": item.yes_no, "sources_expected": item.locators,
        "kind": o.kind, "answer": o.answer, "withheld": o.withheld, "passed": not s.reasons,
        "correct": s.correct, "lenient": s.lenient, "cited_right": s.cited_right, "invented": s.invented,
        "junk": s.junk, "wrong_yes_no": s.wrong_yes_no, "behaved": s.behaved, "recall": s.recall,
        "why": s.reasons, "checks": o.checks, "fallback": o.fallback, "contaminated": contaminated,
        "sources": o.sources,
        "ttft_s": round(o.ttft_s, 4), "total_s": round(o.total_s, 4),
        "tokens_per_s": round(speed, 2) if speed is not None else None,
    }  # fmt: skip


def metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Quality metrics of one split's result rows (rates in 0..1; None where the split has no such item)."""
    if not rows:
        return None
    answers = [r for r in rows if r["expect"] in ANSWERS]
    facts = [r for r in rows if r["expect"] == "answer"]
    answered = [r for r in answers if r["kind"] == "answer"]
    polar = [r for r in rows if r["wrong_yes_no"] is not None]
    return {
        "items": len(rows),
        "answer_items": len(answers),
        "answer_correctness": _share([bool(r["correct"]) for r in answers]),
        "lenient_correctness": _share([bool(r["lenient"]) for r in answers]),
        "citation_correctness": _share([bool(r["cited_right"]) for r in facts]),
        "groundedness": _share([not r["invented"] for r in answered]),
        "invented_facts": sum(len(r["invented"]) for r in answered),
        "junk_answers": sum(1 for r in answered if r["junk"]),
        "wrong_yes_no_rate": _share([bool(r["wrong_yes_no"]) for r in polar]),
        "unknown_accuracy": _share([bool(r["correct"]) for r in rows if r["expect"] == "unknown"]),
        "refusal_rate": _share([r["behaved"] for r in rows if r["expect"] == "refuse"]),
        "false_refusal_rate": _share([r["kind"] != "answer" for r in facts]),
        "withheld_rate": _share([r["withheld"] for r in answered]),
        "fallback_rate": _share([bool(r.get("fallback")) for r in answered]),
        "handoff_accuracy": _share([r["behaved"] for r in rows if r["expect"] == "handoff"]),
        "rule_accuracy": _share([r["behaved"] for r in rows if r["expect"] == "rule"]),
        "recall_at_k": _share([r["recall"] == 1 for r in facts if r["recall"] is not None]),
        "contaminated_share": _share([r["contaminated"] is not None for r in rows]),
    }


def by_split(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Metrics per split: 'heldout' and 'dev'."""
    return {split: metrics([r for r in rows if r["split"] == split]) for split in SPLITS}


def summarize(
    run: ModelRun, price_per_hour: float, price_per_mtok: float, contaminated: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every metric for one model: quality per split (keys 'heldout' and 'dev'), speed and cost overall."""
    contaminated = contaminated or {}
    rows = [result_row(run.choice.label, o, contaminated.get(o.item.id)) for o in run.outcomes]
    seconds_per_q = sum(o.total_s for o in run.outcomes) / max(len(run.outcomes), 1)
    tokens_per_q = sum(o.tokens_in + o.tokens_out for o in run.outcomes) / max(len(run.outcomes), 1)
    per_conv = tokens_per_q * price_per_mtok / 1e6 if run.choice.endpoint else seconds_per_q * price_per_hour / 3600
    answered = [r for r in rows if r["kind"] == "answer"]
    return {
        "model": run.choice.label,
        "spec": run.choice.spec,
        "items": len(rows),
        **by_split(rows),
        "ttft_s": round(_median([r["ttft_s"] for r in answered]), 4),
        "tokens_per_s": round(_median([r["tokens_per_s"] for r in answered if r["tokens_per_s"] is not None]), 2),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "model_size_mb": round(run.choice.size_bytes / 2**20, 1) if run.choice.size_bytes is not None else None,
        "cost_per_1k_conversations": round(per_conv * CONVERSATIONS, 4),
        "seconds": round(run.seconds, 1),
        "results": rows,
    }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def gated_split(row: Mapping[str, Any]) -> str:
    """The split the gate reads: held-out when the domain has one, else the development set."""
    return "heldout" if row.get("heldout") else "dev"


def gate(row: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """Each metric of the gated split on the wrong side of its threshold, as a sentence; empty when it passes."""
    split = gated_split(row)
    values = row.get(split) or {}
    failures = []
    for name, higher_is_better in GATED.items():
        value, limit = values.get(name), getattr(thresholds, name)
        if value is None:
            continue
        if (value < limit) if higher_is_better else (value > limit):
            side = "below the minimum" if higher_is_better else "above the maximum"
            shown = (f"{value}", f"{limit}") if name in COUNTS else (f"{value:.0%}", f"{limit:.0%}")
            failures.append(f"{row['model']}: {split} {name} {shown[0]} is {side} {shown[1]}")
    return failures


def headline(row: Mapping[str, Any], key: str) -> float | None:
    """A metric of the gated split."""
    values = row.get(gated_split(row)) or {}
    value = values.get(key)
    return float(value) if value is not None else None


def verdict(rows: list[dict[str, Any]]) -> str:
    """A plain-language comparison on the gated split (the cheapest against the most correct)."""
    if not rows:
        return "No model was evaluated."
    split = "held-out" if gated_split(rows[0]) == "heldout" else "development"
    best = max(rows, key=lambda r: (headline(r, "answer_correctness") or 0, -r["cost_per_1k_conversations"]))
    cheap = min(rows, key=lambda r: (r["cost_per_1k_conversations"], -(headline(r, "answer_correctness") or 0)))
    best_ok = headline(best, "answer_correctness")
    head = f"On the {split} questions, {best['model']} answers {_pct(best_ok)} strictly correctly"
    if cheap is best or len(rows) == 1:
        return (
            f"{head}, cites the right rows or sections in {_pct(headline(best, 'citation_correctness'))}, invents "
            f"{_count(headline(best, 'invented_facts'))} facts, and costs {_money(best['cost_per_1k_conversations'])} "
            "per 1,000 conversations."
        )
    cheap_ok = headline(cheap, "answer_correctness")
    share = (cheap_ok or 0) / best_ok if best_ok else 0.0
    ratio = (
        best["cost_per_1k_conversations"] / cheap["cost_per_1k_conversations"]
        if cheap["cost_per_1k_conversations"]
        else float("inf")
    )
    return (
        f"{head}; {cheap['model']} reaches {share:.0%} of that ({_pct(cheap_ok)}) at 1/{ratio:.0f} of the cost "
        f"({_money(cheap['cost_per_1k_conversations'])} vs {_money(best['cost_per_1k_conversations'])} per 1,000 "
        "conversations)."
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 0.01 else f"${value:,.2f}"

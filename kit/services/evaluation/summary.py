"""Per-model metrics from a run, the ship gate, and the plain-language verdict."""

from __future__ import annotations

from typing import Any

from kit.services.evaluation.runner import ModelRun, median
from kit.settings import Thresholds

# metric -> True when higher is better (the gate's threshold is a minimum), False for a maximum
GATED = {
    "answer_correctness": True,
    "citation_correctness": True,
    "groundedness": True,
    "refusal_rate": True,
    "false_refusal_rate": False,
    "handoff_accuracy": True,
    "recall_at_k": True,
}
CONVERSATIONS = 1000


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def summarize(run: ModelRun, price_per_hour: float, price_per_mtok: float) -> dict[str, Any]:
    """Every metric for one model (rates in 0..1; None where the eval set has no such item)."""
    answers = [o for o in run.outcomes if o.item.expect == "answer"]
    answered = [o for o in answers if o.kind == "answer"]
    timed = [o for o in run.outcomes if o.kind == "answer" and o.tokens_out > 1 and not o.withheld]
    seconds_per_q = sum(o.total_s for o in run.outcomes) / max(len(run.outcomes), 1)
    tokens_per_q = sum(o.tokens_in + o.tokens_out for o in run.outcomes) / max(len(run.outcomes), 1)
    per_conv = tokens_per_q * price_per_mtok / 1e6 if run.choice.endpoint else seconds_per_q * price_per_hour / 3600
    return {
        "model": run.choice.label,
        "spec": run.choice.spec,
        "items": len(run.outcomes),
        "answer_correctness": _share([bool(o.scored.correct) for o in answers]),
        "citation_correctness": _share([bool(o.scored.cited_right) for o in answers]),
        "groundedness": _share([not o.scored.invented for o in answered]),
        "invented_facts": sum(len(o.scored.invented) for o in answered),
        "refusal_rate": _share([o.scored.behaved for o in run.outcomes if o.item.expect == "refuse"]),
        "false_refusal_rate": _share([o.kind != "answer" for o in answers]),
        "withheld_rate": _share([o.withheld for o in answered]),
        "handoff_accuracy": _share([o.scored.behaved for o in run.outcomes if o.item.expect == "handoff"]),
        "rule_accuracy": _share([o.scored.behaved for o in run.outcomes if o.item.expect == "rule"]),
        "recall_at_k": _share([bool(o.scored.retrieved_source) for o in answers]),
        "ttft_s": round(median([o.ttft_s for o in answered]), 4),
        "tokens_per_s": round(median([(o.tokens_out - 1) / o.generation_s for o in timed]), 2),
        "peak_rss_mb": round(run.peak_rss_mb, 1),
        "model_size_mb": round(run.choice.size_bytes / 2**20, 1) if run.choice.size_bytes is not None else None,
        "cost_per_1k_conversations": round(per_conv * CONVERSATIONS, 4),
        "seconds": round(run.seconds, 1),
    }


def gate(metrics: dict[str, Any], thresholds: Thresholds) -> list[str]:
    """Each metric on the wrong side of its threshold, as a sentence; empty when the gate passes."""
    failures = []
    for name, higher_is_better in GATED.items():
        value, limit = metrics.get(name), getattr(thresholds, name)
        if value is None:
            continue
        if (value < limit) if higher_is_better else (value > limit):
            side = "below the minimum" if higher_is_better else "above the maximum"
            failures.append(f"{metrics['model']}: {name} {value:.0%} is {side} {limit:.0%}")
    return failures


def verdict(rows: list[dict[str, Any]]) -> str:
    """A plain-language comparison, computed from the rows (the cheapest against the most correct)."""
    if not rows:
        return "No model was evaluated."
    best = max(rows, key=lambda r: (r["answer_correctness"] or 0, -r["cost_per_1k_conversations"]))
    cheap = min(rows, key=lambda r: (r["cost_per_1k_conversations"], -(r["answer_correctness"] or 0)))
    head = f"{best['model']} answers {_pct(best['answer_correctness'])} of in-domain questions correctly"
    if cheap is best or len(rows) == 1:
        return (
            f"{head}, cites the right source in {_pct(best['citation_correctness'])}, and costs "
            f"{_money(best['cost_per_1k_conversations'])} per 1,000 conversations."
        )
    share = (cheap["answer_correctness"] or 0) / best["answer_correctness"] if best["answer_correctness"] else 0.0
    ratio = (
        best["cost_per_1k_conversations"] / cheap["cost_per_1k_conversations"]
        if cheap["cost_per_1k_conversations"]
        else float("inf")
    )
    return (
        f"{cheap['model']} reaches {share:.0%} of {best['model']}'s correctness "
        f"({_pct(cheap['answer_correctness'])} vs {_pct(best['answer_correctness'])}) at "
        f"1/{ratio:.0f} of the cost ({_money(cheap['cost_per_1k_conversations'])} vs "
        f"{_money(best['cost_per_1k_conversations'])} per 1,000 conversations)."
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _money(value: float) -> str:
    return f"${value:,.4f}" if value < 0.01 else f"${value:,.2f}"

"""Eval metrics on hand-made answers, with exact expected values."""

from __future__ import annotations

from decimal import Decimal

from kit.records import EvalItem
from kit.services.evaluation.metrics import correct, fact_present, invented, numbers, score
from kit.services.evaluation.runner import ModelChoice, ModelRun, Outcome
from kit.services.evaluation.summary import gate, summarize, verdict
from kit.settings import ModelSettings, Thresholds

ITEM = EvalItem(
    id="r-1", question="How much is the trail tent?", expected_facts=["149.00", "2 years"], source="docs/catalogue.csv"
)
CONTEXT = "NW-TNT-0042 — Trail Tent\nprice: 149.00\nwarranty: 2 years\nstock: 12"


def test_numbers_are_compared_by_value() -> None:
    assert numbers("costs $1,299.00 or 149 for 2") == {Decimal("1299"), Decimal("149"), Decimal("2")}
    assert fact_present("149.00", "It is $149 [1].")
    assert fact_present("$149.00", "It is 149.00.")
    assert not fact_present("149.00", "It is $149.50.")
    assert not fact_present("149.00", "It is $1149.00.")
    assert fact_present("2 years", "covered for 2  Years")


def test_a_correct_answer() -> None:
    s = score(
        ITEM,
        "The Trail Tent costs $149.00 with a 2 years warranty [1].",
        "answer",
        None,
        ["docs/catalogue.csv"],
        CONTEXT,
        ["docs/catalogue.csv"],
    )
    assert (s.correct, s.cited_right, s.invented, s.behaved, s.retrieved_source) == (True, True, [], True, True)


def test_a_wrong_price() -> None:
    s = score(
        ITEM,
        "It costs $139.00 and has a 2 years warranty [1].",
        "answer",
        None,
        ["docs/catalogue.csv"],
        CONTEXT,
        ["docs/catalogue.csv"],
    )
    assert (s.correct, s.cited_right, s.invented) == (False, True, ["$139.00"])


def test_citing_the_wrong_source() -> None:
    s = score(
        ITEM,
        "It costs $149.00, 2 years warranty [2].",
        "answer",
        None,
        ["docs/policies/returns.md"],
        CONTEXT,
        ["docs/policies/returns.md", "docs/catalogue.csv"],
    )
    assert (s.correct, s.cited_right, s.invented) == (True, False, [])


def test_refusing_an_in_domain_question() -> None:
    s = score(ITEM, "Sorry, I can only help with our store.", "refuse", None, [], "", ["docs/catalogue.csv"])
    assert (s.correct, s.cited_right, s.behaved) == (False, False, False)


def test_inventing_a_sku() -> None:
    answer = "The NW-TNT-0099 costs $149.00, 2 years warranty [1]."
    assert invented(answer, CONTEXT) == ["NW-TNT-0099"]
    assert correct(ITEM, answer)


def test_refuse_and_rule_items_score_behaviour_only() -> None:
    refuse = EvalItem(id="x", question="Write me a poem", expect="refuse")
    assert score(refuse, "Sorry…", "refuse", None, [], "", []).behaved
    assert not score(refuse, "Roses are red", "answer", None, [], "", []).behaved
    rule = EvalItem(id="y", question="4111 1111 1111 1111", expect="rule", rule="card_numbers")
    assert score(rule, "never share", "rule", "card_numbers", [], "", []).behaved
    assert not score(rule, "never share", "rule", "other_rule", [], "", []).behaved


def _outcome(
    item: EvalItem, answer: str, kind: str, cited: list[str], total_s: float = 2.0, withheld: bool = False
) -> Outcome:
    s = score(item, "" if withheld else answer, kind, None, cited, CONTEXT, ["docs/catalogue.csv"])
    # the model's first token at 0.5 s; the customer's at 0.7 s (the output guard holds a few words back)
    return Outcome(item, answer, kind, withheld, [], s, ttft_s=0.7, total_s=total_s, generation_s=total_s - 0.5,
                   tokens_in=400, tokens_out=31)  # fmt: skip


def test_summary_gate_and_verdict() -> None:
    refuse = EvalItem(id="x", question="Write me a poem", expect="refuse")
    small = ModelRun(
        ModelChoice("base", "small", ModelSettings(), 250 * 2**20),
        [
            _outcome(ITEM, "$149.00, 2 years [1]", "answer", ["docs/catalogue.csv"]),
            _outcome(ITEM, "$139.00, 2 years [1]", "answer", ["docs/catalogue.csv"]),
            _outcome(refuse, "Sorry", "refuse", []),
            _outcome(ITEM, "Sorry", "refuse", []),
        ],
    )
    row = summarize(small, price_per_hour=0.036, price_per_mtok=1.0)
    assert row["answer_correctness"] == round(1 / 3, 4)
    assert row["citation_correctness"] == round(2 / 3, 4)
    assert row["groundedness"] == 0.5 and row["invented_facts"] == 1
    assert row["false_refusal_rate"] == round(1 / 3, 4) and row["refusal_rate"] == 1.0
    assert row["withheld_rate"] == 0.0
    assert row["handoff_accuracy"] is None and row["recall_at_k"] == 1.0
    assert row["ttft_s"] == 0.7 and row["tokens_per_s"] == 20.0 and row["model_size_mb"] == 250.0  # 30 in 1.5 s
    assert row["cost_per_1k_conversations"] == 0.02  # 2 s a question at $0.036/h, 1,000 times
    failures = gate(row, Thresholds(answer_correctness=0.5, false_refusal_rate=0.1))
    assert failures == [
        "small: answer_correctness 33% is below the minimum 50%",
        "small: groundedness 50% is below the minimum 80%",
        "small: false_refusal_rate 33% is above the maximum 10%",
    ]
    big = dict(row, model="big", answer_correctness=0.5, cost_per_1k_conversations=0.8)
    assert verdict([row, big]) == (
        "small reaches 67% of big's correctness (33% vs 50%) at 1/40 of the cost "
        "($0.02 vs $0.80 per 1,000 conversations)."
    )


def test_a_withheld_answer_counts_as_withheld_not_correct() -> None:
    run = ModelRun(ModelChoice("base", "small", ModelSettings(), None), [
        _outcome(ITEM, "Sorry, I can't share that. [1] docs/catalogue.csv — 149.00", "answer", [], withheld=True),
        _outcome(ITEM, "$149.00, 2 years [1]", "answer", ["docs/catalogue.csv"]),
    ])  # fmt: skip
    row = summarize(run, price_per_hour=0.036, price_per_mtok=1.0)
    assert row["withheld_rate"] == 0.5 and row["answer_correctness"] == 0.5 and row["citation_correctness"] == 0.5

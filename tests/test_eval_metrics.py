"""The strict scorer on hand-made answers, with exact expected verdicts and reasons; summary, gate and verdict."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from kit.records import EvalItem
from kit.services.evaluation.metrics import Turn, correct, fact_present, invented, junk, numbers, polarity, score
from kit.services.evaluation.runner import ModelChoice, ModelRun, Outcome
from kit.services.evaluation.summary import gate, summarize, verdict
from kit.settings import ModelSettings, Thresholds


@dataclass(frozen=True)
class Ref:
    source: str
    title: str
    text: str


TENT = Ref(
    "docs/catalogue.csv",
    "NW-TNT-0042 — Trail Tent",
    "NW-TNT-0042 — Trail Tent\nprice: 149.00\nwarranty: 2 years\nstock: 12",
)
LAMP = Ref("docs/catalogue.csv", "NW-LGT-0601 — Lantern", "NW-LGT-0601 — Lantern\nprice: 32.00\nlumens: 350")
SHIPPING = Ref(
    "docs/policies/shipping.md",
    "Shipping Policy > Where we ship",
    "Shipping Policy > Where we ship\nWe ship within the 50 US states only. Orders over $75 ship free.",
)
GIVEN = [TENT, LAMP, SHIPPING]
CONTEXT = "\n".join(r.text for r in GIVEN)
ITEM = EvalItem(
    id="r-1",
    question="How much is the trail tent and what warranty does it have?",
    expected_facts=["149.00", "2 years"],
    sources=["docs/catalogue.csv#NW-TNT-0042"],
)
ABROAD = EvalItem(
    id="r-2",
    question="Can you ship my order to Toronto?",
    yes_no="no",
    expected_facts=["50 US states"],
    forbidden_facts=["yes"],
    sources=["docs/policies/shipping.md#Where we ship"],
)


def turn(answer: str, cited: list[Ref] | None = None, kind: str = "answer", **kw: object) -> Turn:
    return Turn(answer=answer, kind=kind, given=GIVEN, cited=cited or [], context=CONTEXT, **kw)  # type: ignore[arg-type]


def test_numbers_are_compared_by_value() -> None:
    assert numbers("costs $1,299.00 or 149 for 2") == {Decimal("1299"), Decimal("149"), Decimal("2")}
    assert fact_present("149.00", "It is $149 [1].")
    assert fact_present("$149.00", "It is 149.00.")
    assert not fact_present("149.00", "It is $149.50.")
    assert not fact_present("149.00", "It is $1149.00.")
    assert fact_present("2 years", "covered for 2  Years")


def test_a_fact_written_another_way_is_still_stated() -> None:
    """Units in another spelling, numbers in words, clock times on 12 or 24 hours: the same fact."""
    assert fact_present("19 sq ft", "The floor area is 19 square feet [1].")
    assert fact_present("10 mm", "It has a 10mm drop.")
    assert fact_present("3", "UPS makes three delivery attempts.")
    assert fact_present("1 business day", "We call back within one business day.")
    assert fact_present("14:00", "Saturday 10:00 am–2:00 pm ET.")
    assert fact_present("8:00 PM", "We are open until 8 p.m. on Thursdays.")
    assert fact_present("3 to 5 days", "Results take 3–5 days.")
    assert fact_present("50%", "You get 50 percent back.")
    assert fact_present("3 lb 15 oz", "It weighs 3.00 lb 15 oz.")
    # ... and a different fact is still missing
    assert not fact_present("8:00 PM", "We open at 8:00 AM.")
    assert not fact_present("4 hours", "It lasts about 14 hours.")
    assert not fact_present("3 lb 15 oz", "It weighs 1 lb 15 oz.")
    assert not fact_present("July 1", "It starts July 10.")
    assert not fact_present("IPX4", "It is rated IPX7.")
    assert not fact_present("3", "It takes 13 days.")


def test_a_right_answer() -> None:
    s = score(ITEM, turn("The Trail Tent costs $149.00 and has a 2 years warranty [1].", [TENT]))
    assert (s.correct, s.lenient, s.cited_right, s.invented, s.junk, s.recall, s.reasons) == (
        True, True, True, [], [], 1.0, [],
    )  # fmt: skip


def test_an_echo_of_the_question_is_not_an_answer() -> None:
    item = EvalItem(
        id="c-1",
        question="Are you in network with TriValley Health?",
        expected_facts=["TriValley"],
        sources=["docs/policies/shipping.md"],
    )
    s = score(item, turn("Yes, we're in network with TriValley Health [3].", [SHIPPING]))
    assert (s.correct, s.lenient) == (False, True)
    assert s.reasons == ["every expected fact is already in the question: nothing to check"]


def test_wrong_polarity() -> None:
    s = score(ABROAD, turn("Yes! We ship to Toronto, within the 50 US states [3].", [SHIPPING]))
    assert (s.correct, s.lenient, s.wrong_yes_no, s.cited_right) == (False, True, True, True)
    assert s.reasons == ["forbidden yes", "wrong yes/no: opens with yes, the answer is no"]
    right = score(ABROAD, turn("No, sorry: we ship within the 50 US states only [3].", [SHIPPING]))
    assert (right.correct, right.wrong_yes_no, right.reasons) == (True, False, [])
    # "yes" is a whole word: "yesterday" is not a yes
    assert score(ABROAD, turn("No. As of yesterday we ship to the 50 US states only [3].", [SHIPPING])).correct


def test_an_invented_figure() -> None:
    s = score(ITEM, turn("It costs $139.00, 2 years warranty, and also $149.00 in store [1].", [TENT]))
    assert (s.correct, s.lenient, s.invented) == (False, True, ["$139.00"])
    assert s.reasons == ["invented $139.00"]


def test_a_junk_tail() -> None:
    answer = "The Trail Tent is $149.00 with 2 years of warranty [1]. finalTextright]perks: finalText1"
    s = score(ITEM, turn(answer, [TENT]))
    assert (s.correct, s.lenient, s.cited_right) == (False, True, True)
    assert s.junk == ["glued token finalTextright", "glued token ]perks", "glued token finalText1"]
    assert s.reasons == ["invented finalText1"] + [f"junk: {j}" for j in s.junk]
    assert junk("It is $149.00.\nUser: and the lantern?", CONTEXT) == ["run-on: writes another turn"]
    assert junk("It costs 149.00 문의문의", CONTEXT) == ["another script: 문의"]
    loop = "We ship within the 50 US states only to you. " * 2
    assert junk(loop, CONTEXT) == ["run-on: repeats itself"]
    assert score(ITEM, turn("$149.00, 2 years [1]", [TENT], hit_limit=True)).junk == ["run-on: stopped at max_tokens"]


def test_citations_and_recall_at_row_level() -> None:
    # the right file, the wrong row: not cited right
    s = score(ITEM, turn("The Trail Tent costs $149.00, 2 years warranty [2].", [LAMP]))
    assert (s.correct, s.cited_right, s.reasons) == (True, False, ["not cited docs/catalogue.csv#NW-TNT-0042"])
    missed = Turn("$149.00, 2 years", "answer", given=[LAMP, SHIPPING], context=CONTEXT)
    assert score(ITEM, missed).recall == 0.0
    two = EvalItem(
        id="t",
        question="Tent price and can it ship free?",
        expected_facts=["149.00", "75"],
        sources=["docs/catalogue.csv#NW-TNT-0042", "docs/policies/shipping.md#where we ship"],
    )
    assert score(two, turn("$149.00 [1], and orders over $75 ship free [3].", [TENT, SHIPPING])).cited_right
    assert not score(two, turn("$149.00 [1], and orders over $75 ship free.", [TENT])).cited_right


def test_unknown_items() -> None:
    kayak = EvalItem(
        id="u", question="How much are your inflatable kayaks?", expect="unknown", forbidden_facts=["kayak"]
    )
    good = score(kayak, turn("Sorry, I don't see any of those in our catalogue."))
    assert (good.correct, good.reasons) == (True, [])
    figure = score(kayak, turn("Our inflatable kayak is $149.00 [1]."))
    assert figure.correct is False
    assert figure.reasons == ["does not say the documents don't have it", "states a figure $149.00", "forbidden kayak"]
    refused = score(kayak, turn("Sorry, I can only help with our store.", kind="refuse"))
    assert (refused.correct, refused.behaved, refused.reasons) == (False, False, ["expected unknown, got refuse"])


def test_refusing_an_in_domain_question() -> None:
    s = score(ITEM, turn("Sorry, I can only help with our store.", kind="refuse"))
    assert (s.correct, s.cited_right, s.behaved, s.reasons) == (False, False, False, ["expected answer, got refuse"])


def test_withheld_is_not_correct() -> None:
    s = score(ITEM, turn("The Trail Tent costs $149.00, 2 years [1].", [TENT], withheld=True))
    assert (s.correct, s.reasons) == (False, ["withheld by the output guard"])


def test_inventing_a_sku_url_or_email() -> None:
    answer = "The NW-TNT-0099 costs $149.00, 2 years warranty; see https://shop.example/t or ask x@y.example [1]."
    assert invented(answer, CONTEXT) == ["https://shop.example/t", "NW-TNT-0099", "x@y.example"]
    assert correct(ITEM, answer)


def test_polarity() -> None:
    assert polarity("Yes, we do.") == "yes" and polarity("Of course!") == "yes"
    assert polarity("No, we ship only within the US.") == "no" and polarity("Unfortunately not.") == "no"
    assert polarity("I'm afraid we can't.") == "no" and polarity("We ship within the US.") is None


def test_refuse_and_rule_items_score_behaviour_only() -> None:
    refuse = EvalItem(id="x", question="Write me a poem", expect="refuse")
    assert score(refuse, turn("Sorry…", kind="refuse")).behaved
    assert not score(refuse, turn("Roses are red")).behaved
    rule = EvalItem(id="y", question="4111 1111 1111 1111", expect="rule", rule="card_numbers")
    assert score(rule, turn("never share", kind="rule", rule="card_numbers")).behaved
    other = score(rule, turn("never share", kind="rule", rule="other_rule"))
    assert (other.behaved, other.reasons) == (False, ["expected rule card_numbers, got rule other_rule"])


def _outcome(item: EvalItem, answer: str, kind: str, cited: list[Ref], split: str = "heldout") -> Outcome:
    s = score(item, turn(answer, cited, kind=kind))
    # the model's first token at 0.5 s; the customer's at 0.7 s (the output guard holds a few words back)
    return Outcome(item, split, answer, kind, False, [], s, ttft_s=0.7, total_s=2.0, generation_s=1.5,
                   tokens_in=400, tokens_out=31)  # fmt: skip


def test_summary_per_split_gate_and_verdict() -> None:
    refuse = EvalItem(id="x", question="Write me a poem", expect="refuse")
    small = ModelRun(
        ModelChoice("base", "small", ModelSettings(), 250 * 2**20),
        [
            _outcome(ITEM, "$149.00, 2 years [1]", "answer", [TENT]),
            _outcome(ITEM, "$139.00, 2 years [1]", "answer", [TENT]),
            _outcome(refuse, "Sorry", "refuse", []),
            _outcome(ITEM, "Sorry", "refuse", []),
            _outcome(ABROAD, "Yes, to the 50 US states [3].", "answer", [SHIPPING], split="dev"),
        ],
    )
    row = summarize(small, price_per_hour=0.036, price_per_mtok=1.0, contaminated={"r-2": "data/train.jsonl:3"})
    held, dev = row["heldout"], row["dev"]
    assert held["items"] == 4 and held["answer_correctness"] == round(1 / 3, 4)
    assert held["citation_correctness"] == round(2 / 3, 4) and held["lenient_correctness"] == round(1 / 3, 4)
    assert held["groundedness"] == 0.5 and held["invented_facts"] == 1 and held["junk_answers"] == 0
    assert held["false_refusal_rate"] == round(1 / 3, 4) and held["refusal_rate"] == 1.0
    assert held["handoff_accuracy"] is None and held["recall_at_k"] == 1.0
    assert held["contaminated_share"] == 0.0 and held["wrong_yes_no_rate"] is None
    assert dev["items"] == 1 and dev["wrong_yes_no_rate"] == 1.0 and dev["contaminated_share"] == 1.0
    assert dev["answer_correctness"] == 0.0 and dev["lenient_correctness"] == 1.0
    assert row["ttft_s"] == 0.7 and row["tokens_per_s"] == 20.0 and row["model_size_mb"] == 250.0  # 30 in 1.5 s
    assert row["cost_per_1k_conversations"] == 0.02  # 2 s a question at $0.036/h, 1,000 times
    wrong = next(r for r in row["results"] if r["id"] == "r-2")
    assert wrong["why"] == ["forbidden yes", "wrong yes/no: opens with yes, the answer is no"]
    assert wrong["contaminated"] == "data/train.jsonl:3" and wrong["split"] == "dev"
    assert gate(row, Thresholds(answer_correctness=0.5, false_refusal_rate=0.1, recall_at_k=0.5)) == [
        "small: heldout answer_correctness 33% is below the minimum 50%",
        "small: heldout citation_correctness 67% is below the minimum 90%",
        "small: heldout groundedness 50% is below the minimum 100%",
        "small: heldout invented_facts 1 is above the maximum 0",
        "small: heldout false_refusal_rate 33% is above the maximum 10%",
    ]
    big = dict(row, model="big", heldout=dict(held, answer_correctness=0.5), cost_per_1k_conversations=0.8)
    assert verdict([row, big]) == (
        "On the held-out questions, big answers 50% strictly correctly; small reaches 67% of that (33%) at 1/40 of "
        "the cost ($0.02 vs $0.80 per 1,000 conversations)."
    )
    # no held-out split: the gate reads the development set and says so
    dev_only = dict(row, heldout=None)
    assert gate(dev_only, Thresholds())[0] == "small: dev answer_correctness 0% is below the minimum 80%"


def test_a_stored_answer_is_judged_again_on_what_it_says_and_keeps_what_needed_its_prompt() -> None:
    """scripts/rescore.py: the expected facts and yes/no are checked anew; invented facts and citations, which need
    the prompt the model saw, stay as recorded; a withheld answer is left alone."""
    from kit.services.evaluation.results import rescored

    answer = "The Trail Tent is $149.00 with a two years warranty, and ships in 3 days [1]."
    stored = {
        "expect": "answer", "kind": "answer", "withheld": False, "answer": answer, "correct": False,
        "lenient": False, "wrong_yes_no": None, "passed": False,
        "why": ["missing 2 years", "invented 3", "not cited docs/catalogue.csv#NW-TNT-0042"],
    }  # fmt: skip
    again = rescored(ITEM, stored)
    assert again["why"] == ["invented 3", "not cited docs/catalogue.csv#NW-TNT-0042"]
    assert again["correct"] is False and again["lenient"] is True and again["passed"] is False
    fixed = rescored(ITEM, {**stored, "why": ["missing 2 years"]})
    assert fixed["correct"] is True and fixed["passed"] is True
    wrong = rescored(ABROAD, {**stored, "answer": "Yes, we ship to the 50 US states.", "why": []})
    assert wrong["correct"] is False and wrong["wrong_yes_no"] is True
    withheld = {**stored, "withheld": True, "why": ["missing 2 years", "withheld by the output guard"]}
    assert rescored(ITEM, withheld) == withheld

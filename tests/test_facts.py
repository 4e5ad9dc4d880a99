"""The fact check: every number, price, date and identifier in an answer must occur in its source."""

from __future__ import annotations

import pytest

from kit.services.assistant.facts import facts, grounded, unsupported

ROW = (
    "NW-TNT-0042 — Ridgeline 2 Backpacking Tent\nsku: NW-TNT-0042\nprice: 329.00\nstock: 18\n"
    "specs: capacity: 2 person; season: 3-season; trail weight: 3 lb 14 oz\nwarranty: 3 years"
)
POLICY = (
    "Open Monday–Friday 9:00 AM to 6:00 PM. Call (541) 555-0187 or e-mail care@shop.example.com. "
    "Trips from 2027-03-14. Holiday returns: November 15 to December 24. Orders over $1,649.00 ship free."
)


@pytest.mark.parametrize(
    "answer",
    [
        "The Ridgeline 2 Backpacking Tent (NW-TNT-0042) is $329.00 [1].",
        "It's $329, a 2-person 3-season tent weighing 3 lb 14 oz, and we have 18.",
        "It comes with a 3-year warranty.",
        "Sure!\n1. It is in stock.\n2. It costs 329.00.",  # list markers and citations are not facts
    ],
)
def test_answers_quoting_the_row_are_grounded(answer: str) -> None:
    assert unsupported(answer, ROW) == []


@pytest.mark.parametrize(
    ("answer", "invented"),
    [
        ("It is on sale for $299.00.", ["$299.00"]),
        ("The Ridgeline 3 (NW-TNT-0043) is similar.", ["NW-TNT-0043"]),
        ("Only 4 left!", ["4"]),
        ("It has a 5-year warranty.", ["5-year"]),
    ],
)
def test_invented_facts_are_named(answer: str, invented: list[str]) -> None:
    assert unsupported(answer, ROW) == invented


def test_facts_compare_by_meaning_not_spelling() -> None:
    assert grounded("We open at 9 am and close at 6pm; call 541-555-0187.", POLICY)
    assert grounded("Write to CARE@shop.example.com.", POLICY)
    assert grounded("The trip starts March 14, 2027; returns run until Dec 24.", POLICY)
    assert grounded("Free shipping over $1649.", POLICY)
    assert unsupported("The trip starts 2027-03-15.", POLICY) == ["2027-03-15"]
    assert unsupported("We close at 7 pm.", POLICY) == ["7 pm"]
    assert unsupported("Call (541) 555-0199.", POLICY) == ["(541) 555-0199"]
    assert unsupported("Write to help@shop.example.com.", POLICY) == ["help@shop.example.com"]


def test_several_sources_together_and_plain_text() -> None:
    assert grounded("The tent is $329.00 and we open at 9:00.", ROW, POLICY)
    assert grounded("Happy to help! Anything else?", ROW)
    assert [f.kind for f in facts("NW-TNT-0042 costs $329 on 2027-03-14 at 9 am")] == [
        "ident",
        "number",
        "date",
        "time",
    ]

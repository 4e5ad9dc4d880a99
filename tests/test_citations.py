"""Training answers get the citations the runtime asks for: the documents in the prompt that hold their facts."""

from __future__ import annotations

from kit.chunk import Chunk
from kit.services.training.citations import cite

TENT = Chunk(
    "sku: NW-TNT-0042\nname: Ridgeline 2 Backpacking Tent\nprice: 329.00\nstock: 18", "docs/catalogue.csv", "r2"
)
TENT3 = Chunk(
    "sku: NW-TNT-0043\nname: Ridgeline 3 Backpacking Tent\nprice: 389.00\nstock: 7", "docs/catalogue.csv", "r3"
)
RETURNS = Chunk(
    "Return Window\nUnused items can be returned within 30 days of delivery for a full refund.",
    "docs/policies/returns.md",
    "Returns",
)
SHIPPING = Chunk(
    "Shipping\nStandard shipping takes 3 to 5 business days; orders over $75 ship free.",
    "docs/policies/shipping.md",
    "Ship",
)
PRIVACY = Chunk("Privacy\nWe never sell personal information to anyone.", "docs/policies/privacy.md", "Privacy")


def test_the_document_holding_the_answers_facts_is_cited_before_the_final_stop() -> None:
    answer = "The Ridgeline 3 (NW-TNT-0043) is $389.00, and we have 7 in stock."
    assert cite(answer, [TENT, TENT3, RETURNS], ["docs/catalogue.csv"]) == (
        "The Ridgeline 3 (NW-TNT-0043) is $389.00, and we have 7 in stock [2]."
    )


def test_facts_from_two_documents_cite_both_in_order() -> None:
    answer = "The Ridgeline 2 is $329.00 and the Ridgeline 3 is $389.00"
    assert cite(answer, [TENT3, RETURNS, TENT], ["docs/catalogue.csv"]) == f"{answer} [1][3]"


def test_an_answer_without_facts_cites_the_recorded_source_sharing_most_words() -> None:
    answer = "Unused items can be returned for a full refund!"
    chunks = [SHIPPING, PRIVACY, RETURNS]
    sources = ["docs/policies/returns.md", "docs/policies/privacy.md"]
    assert cite(answer, chunks, sources) == "Unused items can be returned for a full refund [3]!"


def test_documents_outside_the_recorded_sources_are_never_cited() -> None:
    answer = "Orders over $75 ship free."
    assert cite(answer, [SHIPPING], ["docs/catalogue.csv"]) == answer  # the fact is there, but not the source
    assert cite(answer, [SHIPPING], []) == answer  # refusals and small talk record no source
    assert cite(answer, [RETURNS], ["docs/policies/returns.md"]) == answer  # $75 is not in the document given


def test_an_answer_that_already_cites_is_left_alone_and_synth_refs_name_their_file() -> None:
    assert cite("It is $329.00 [1].", [TENT3, TENT], ["docs/catalogue.csv"]) == "It is $329.00 [1]."
    ref = f"docs/catalogue.csv#{TENT.id}"  # how kit synth records the chunk an example came from
    assert cite("It is $329.00", [TENT], [ref]) == "It is $329.00 [1]"

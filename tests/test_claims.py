"""The claim check on hand-made answers: what is kept, dropped, cut or replaced by the passage, and why."""

from __future__ import annotations

from dataclasses import dataclass

from kit.services.claims import ClaimCheck, check, sentences, streamed


@dataclass(frozen=True)
class Doc:
    n: int
    source: str
    title: str
    text: str


TENT = Doc(
    1,
    "docs/catalogue.csv",
    "NW-TNT-0043 — Ridgeline 3 Backpacking Tent",
    "NW-TNT-0043 — Ridgeline 3 Backpacking Tent\nprice: 389.00\nstock: 4\nwarranty: 3 years",
)
SHIPPING = Doc(
    2,
    "docs/policies/shipping.md",
    "Shipping Policy > Where We Ship",
    "Shipping Policy > Where We Ship\nWe ship only within the 50 US states. We do not ship to Canada or other "
    "countries.",
)
GIVEN = [TENT, SHIPPING]


def test_sentences_keep_their_citations() -> None:
    assert sentences("It is $389.00 [1]. It has 3 years [1]! And? ok") == [
        "It is $389.00 [1].", "It has 3 years [1]!", "And?", "ok",
    ]  # fmt: skip


def test_a_full_stop_closing_an_abbreviation_does_not_end_the_sentence() -> None:
    assert sentences("Open 9:00 a.m. to 5:00 p.m. on weekdays. Bring e.g. a stove. We ship within the U.S. only.") == [
        "Open 9:00 a.m. to 5:00 p.m. on weekdays.", "Bring e.g. a stove.", "We ship within the U.S. only.",
    ]  # fmt: skip


def test_an_uncited_sentence_gets_the_citation_of_the_document_holding_it() -> None:
    answer = "The Ridgeline 3 Backpacking Tent costs $389.00. We ship only within the 50 US states. Happy camping!"
    result = check(answer, "How much is the Ridgeline 3?", GIVEN)
    assert result.text == (
        "The Ridgeline 3 Backpacking Tent costs $389.00 [1]. We ship only within the 50 US states [2]. Happy camping!"
    )
    assert result.decisions[0].startswith("cited [1] for \u201cThe Ridgeline 3 Backpacking Tent costs $389.00.")
    # a sentence that already cites keeps its own citation, right or wrong (the eval scores it)
    assert check("We do not ship to Canada [1].", "Canada?", GIVEN).text == "We do not ship to Canada [1]."
    # streamed, a citation written after the full stop still closes its sentence (no second one is added)
    pieces = iter(["The Ridgeline 3 Backpacking Tent is $389.00.", " [", "1", "]", " Enjoy", " camping!"])
    got = "".join(streamed(pieces, ClaimCheck("How much is the Ridgeline 3?", GIVEN)))
    assert got == "The Ridgeline 3 Backpacking Tent is $389.00. [1] Enjoy camping!"
    # a figure the document lacks: that document is not the one holding the sentence
    assert check("The warranty is 3 years and ships in the 50 US states.", "Warranty?", GIVEN).text.endswith(
        "50 US states."
    )


def test_an_unsupported_sentence_is_dropped_and_run_on_text_cut() -> None:
    answer = "The Ridgeline 3 is $389.00 [1]. It comes with a 5 year warranty [1]. finalText1 nextPage. More text."
    result = check(answer, "How much is the Ridgeline 3?", GIVEN)
    assert (result.text, result.fallback) == ("The Ridgeline 3 is $389.00 [1].", False)
    assert result.decisions == [
        "dropped \u201cIt comes with a 5 year warranty [1].\u201d: 5 not in the documents it cites",
        "cut from \u201cfinalText1 nextPage.\u201d on: glued token finalText1, glued token nextPage",
    ]


def test_a_figure_from_the_wrong_document_is_dropped() -> None:
    # 50 is in a document, but not in the one the sentence cites
    result = check("The tent is $389.00 [1]. It holds 50 lb [1].", "Tell me about the Ridgeline 3 tent", GIVEN)
    assert result.text == "The tent is $389.00 [1]."


def test_a_yes_the_passage_contradicts_is_replaced_by_the_passage() -> None:
    result = check("Yes, we ship to Toronto [2].", "Can you ship my order to Toronto, Canada?", GIVEN)
    assert result.fallback and result.text == (
        "From our Shipping Policy: \u201cWe do not ship to Canada or other countries.\u201d [2]"
    )
    assert result.decisions[0] == (
        "not sent: opens with yes, but [2] says \u201cWe do not ship to Canada or other countries.\u201d"
    )
    assert check("Yes, it is in stock [1].", "Is the Ridgeline 3 tent in stock?", GIVEN).text == (
        "Yes, it is in stock [1]."
    )


def test_nothing_left_quotes_the_closest_passage_or_says_it_cannot_find_it() -> None:
    row = check("It costs $420.", "How much is the Ridgeline 3 tent?", GIVEN)
    assert row.fallback and row.text.startswith("From our catalogue: \u201cNW-TNT-0043 — Ridgeline 3 Backpacking Tent;")
    assert "price: 389.00" in row.text and row.text.endswith("[1]")
    kayak = check("Our kayaks are $99.", "Do you sell inflatable kayaks?", GIVEN)
    assert (kayak.text, kayak.fallback) == ("I'm sorry, I can't find that in our documents.", True)


def test_streaming_releases_whole_checked_sentences_and_stops_the_model() -> None:
    pieces = ["The Ridge", "line 3 is $", "389", ".00 [1]. ", "It has", " 3 years of warranty [1].", " User: and",
              " never read"]  # fmt: skip
    consumed: list[str] = []

    def model() -> object:
        for piece in pieces:
            consumed.append(piece)
            yield piece

    claim = ClaimCheck("How much is the Ridgeline 3 tent?", GIVEN)
    out = list(streamed(model(), claim))  # type: ignore[arg-type]
    assert out == ["The Ridgeline 3 is $389.00 [1]. ", "It has 3 years of warranty [1]. "]
    assert claim.decisions == ["cut from \u201cUser: and\u201d on: run-on: writes another turn"]
    assert consumed[-1] == " User: and"  # the model was stopped there
    assert claim.fallback is None


def test_the_reply_the_api_and_the_ui_say_when_an_answer_is_a_quoted_passage() -> None:
    from kit.services.reply import Reply, SourceRef, reply_json
    from kit.ui.app import sources_markdown

    ref = SourceRef(2, SHIPPING.source, SHIPPING.title, "line 3", SHIPPING.text)
    claim = ClaimCheck("Can you ship my order to Toronto, Canada?", [ref])
    reply = Reply(
        question="Can you ship my order to Toronto, Canada?", kind="answer", reason="", sources=[ref],
        sent={"role": "user", "content": "Can you ship my order to Toronto, Canada?"}, model="m",
        pieces=streamed(iter(["Yes, we ship to Toronto [2]."]), claim), claims=claim,
    )  # fmt: skip
    assert reply.finish().startswith("From our Shipping Policy: \u201cWe do not ship to Canada")
    info = reply_json(reply)
    assert info["fallback"] and info["checks"][0].startswith("not sent: opens with yes")
    assert "quotes the closest passage" in sources_markdown(reply)

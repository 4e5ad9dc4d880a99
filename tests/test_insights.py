"""The owner's console insights (kit/services/owner/insights.py and the tabs in kit/ui/admin/insights.py) on a real
SQLite feedback store filled through the real recording path: search and kind filters, corrections into the training
data, content gaps grouped by the real embedder, analytics that match the recorded turns."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from runtime_fixtures import ROOT, PlantedEngine

from kit.domain import CORRECTIONS, Domain, load_domain
from kit.errors import DataError, KitError
from kit.services.assistant.reply import Reply, SourceRef
from kit.services.owner.corrections import correction_id
from kit.services.owner.feedback import FeedbackStore, new_conversation
from kit.services.owner.insights import InsightsService, Search
from kit.settings import Privacy

EXAMPLE = ROOT / "data_templates" / "example"
TRANSCRIPT = "document.querySelector('#kit-admin-transcript').innerText"  # the open conversation, in the browser
GAPS = "document.querySelector('#kit-admin-gaps-summary').innerText"
ANSWER = "document.querySelector('#kit-admin-answer textarea').value"
TABLE = "document.querySelector('#kit-admin-found').innerText"


def reply(question: str, answer: str, kind: str = "answer", evidence: float | None = 0.7, withheld: str = "") -> Reply:
    source = SourceRef(1, "docs/policies.md", "Returns", "line 6", "Unused items within 30 days.")
    made = Reply(question, kind, "", [source] if kind == "answer" else [], {"role": "user", "content": question},  # type: ignore[arg-type]
                 "test-model", iter([answer]), evidence=evidence, withheld=withheld)  # fmt: skip
    made.finish()
    return made


@pytest.fixture
def domain(tmp_path: Path) -> Domain:
    dest = tmp_path / "example"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build"))
    return load_domain(dest)


@pytest.fixture
def store(domain: Domain) -> FeedbackStore:
    return FeedbackStore.for_domain(domain.build_dir, Privacy(store_transcripts="full"))


def record(store: FeedbackStore, *turns: Reply, error: str = "") -> tuple[str, list[int]]:
    conv = new_conversation()
    return conv, [store.record(conv, t, error) for t in turns]


@pytest.fixture
def filled(store: FeedbackStore) -> dict[str, tuple[str, list[int]]]:
    """Six conversations, one of each kind the console filters on."""
    made = {
        "returns": record(
            store,
            reply("How long do I have to return an item?", "Within 30 days [1]."),
            reply("And sale items?", "Sale items are final sale."),
        ),
        "shipping": record(store, reply("Is shipping free?", "Free over $50 [1].")),
        "weather": record(store, reply("What's the weather tomorrow?", "Sorry, I can only help…", "refuse", 0.1)),
        "human": record(store, reply("Can I talk to a real person?", "I'll pass you to a person…", "handoff", None)),
        "phone": record(
            store, reply("What's the manager's phone?", "I can't share that.", withheld="a phone number, not public")
        ),
        "broken": record(store, reply("Do you ship to Canada?", "We ship"), error="the model server stopped"),
    }
    store.rate(made["returns"][1][0], up=True)
    store.rate(made["shipping"][1][0], up=False)
    return made


def found(insights: InsightsService, **search: object) -> set[str]:
    return {f.conversation for f in insights.search(Search(**search))}  # type: ignore[arg-type]


def test_search_finds_conversations_by_text_kind_and_day(domain: Domain, store: FeedbackStore, filled) -> None:
    insights = InsightsService(domain, store)
    ids = {name: conv for name, (conv, _) in filled.items()}
    assert found(insights) == set(ids.values())
    listing = insights.search(Search())
    assert [f.conversation for f in listing] == list(reversed(ids.values()))  # the latest first
    assert [f.marks for f in listing] == ["error", "withheld", "hand-off", "refused", "thumbs down", "thumbs up"]
    assert found(insights, text="sale ITEMS") == {ids["returns"]}  # a later turn's words find the conversation
    assert found(insights, text="free over $50") == {ids["shipping"]}  # in an answer
    assert found(insights, text="100%_") == set()  # LIKE's wildcards are taken literally
    assert found(insights, show="thumbs up") == {ids["returns"]}
    assert found(insights, show="thumbs down") == {ids["shipping"]}
    assert found(insights, show="refused") == {ids["weather"]}
    assert found(insights, show="hand-off") == {ids["human"]}
    assert found(insights, show="withheld") == {ids["phone"]}
    assert found(insights, show="error") == {ids["broken"]}
    assert found(insights, show="refused", text="shipping") == set()
    with sqlite3.connect(store.path) as db:  # the shipping question was asked three days ago
        db.execute("UPDATE turns SET created = created - 3 * 86400 WHERE conversation = ?", (ids["shipping"],))
    today = insights.today()
    assert ids["shipping"] not in found(insights, since=today)
    assert found(insights, until=today - timedelta(days=2)) == {ids["shipping"]}
    turns_asked = ["How long do I have to return an item?", "And sale items?"]
    listed = insights.search(Search(text="return"))
    assert [(f.turns, f.first_question, f.marks) for f in listed] == [(2, turns_asked[0], "thumbs up")]
    turns = insights.turns(ids["returns"])
    assert [t["question"] for t in turns] == turns_asked
    with pytest.raises(DataError, match="unknown kind of turn 'bogus'"):
        insights.search(Search(show="bogus"))  # type: ignore[arg-type]


def test_a_correction_is_a_valid_training_conversation_that_finetune_reads(example_dir: Path, tmp_path: Path) -> None:
    from kit.components.trainer import IGNORE, embedded_tokenizer_dir, load_tokenizer
    from kit.services.retrieval.retrieve import Retriever
    from kit.services.training.data import build_examples, read_conversations
    from kit.validation.checks import validate_domain

    domain = load_domain(shutil.copytree(example_dir, tmp_path / "example"))  # indexed once per session
    store = FeedbackStore.for_domain(domain.build_dir)
    _, (turn,) = record(store, reply("Do you gift wrap orders?", "Yes, for free [1]."))
    store.rate(turn, up=False)
    insights = InsightsService(domain, store)
    record_ = insights.correct(turn, "  Not yet: we don't offer gift wrapping.  ")
    stored = store.turn(turn)
    assert stored is not None and record_.id == correction_id(stored) and record_.id.startswith(f"correction-{turn}-")
    lines = (domain.root / CORRECTIONS).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{
        "messages": [{"role": "user", "content": "Do you gift wrap orders?"},
                     {"role": "assistant", "content": "Not yet: we don't offer gift wrapping."}],
        "id": record_.id, "intent": "correction", "sources": [],
    }]  # fmt: skip
    insights.correct(turn, "No, we don't offer gift wrapping.", question="Do you offer gift wrapping?")
    assert len((domain.root / CORRECTIONS).read_text(encoding="utf-8").splitlines()) == 1  # replaced, not added
    assert insights.turns(insights.search(Search(show="corrected"))[0].conversation)[0]["correction"] == (
        "No, we don't offer gift wrapping."
    )
    assert validate_domain(domain) == []  # kit validate reads the corrections file too
    assert [where for where, _ in read_conversations(domain)][-1] == "data/corrections.jsonl:1"
    tokenizer = load_tokenizer(embedded_tokenizer_dir())
    examples = build_examples(domain, Retriever.open(domain), tokenizer, "gemma", 2048, 2)
    corrected = next(e for e in examples if e.where == "data/corrections.jsonl:1")
    assert corrected.messages[-2]["content"].endswith("Question: Do you offer gift wrapping?")
    learned = tokenizer.decode([t for t in corrected.labels if t != IGNORE])
    assert learned == "No, we don't offer gift wrapping.<end_of_turn>"


def test_a_bad_correction_says_why_and_changes_nothing(domain: Domain, store: FeedbackStore) -> None:
    insights = InsightsService(domain, store)
    _, (turn,) = record(store, reply("Do you gift wrap orders?", "Yes."))
    insights.correct(turn, "No, we don't.")
    path = domain.root / CORRECTIONS
    before = path.read_bytes()
    bad = [
        ((turn, "   "), "the correction's answer is empty"),
        ((turn, "No.", ""), "the correction's question is empty"),
        ((turn, "x" * 5000), "the correction's answer has 5,000 characters"),
        ((turn + 99, "No."), f"no stored turn {turn + 99}"),
    ]
    for args, message in bad:
        with pytest.raises(DataError, match=message) as raised:
            insights.correct(*args)  # type: ignore[arg-type]
        assert str(raised.value).count(" — ") == 1  # what, then what to do next
        assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["corrections.jsonl", "train.jsonl"]  # no temp file left
    path.unlink()
    path.mkdir()  # a corrections file that cannot be written
    with pytest.raises(KitError, match=r"cannot write .*corrections\.jsonl") as raised:
        insights.correct(turn, "No, we don't.")
    assert raised.value.hint and list(path.iterdir()) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["corrections.jsonl", "train.jsonl"]


def test_content_gaps_group_paraphrases_and_keep_other_questions_apart(domain: Domain, store: FeedbackStore) -> None:
    wraps = ["Do you offer gift wrapping?", "Can you gift wrap my order?", "Is gift wrapping available?",
             "can you giftwrap it for my mom"]  # fmt: skip
    for question in wraps[:3]:
        record(store, reply(question, "Sorry, I can only help…", "refuse", 0.2))
    record(store, reply(wraps[3], "Our tents come with a bag.", evidence=0.3))  # answered, on weak evidence
    record(store, reply("Do you have a store in Paris?", "Sorry, I can only help…", "refuse", 0.15))
    record(store, reply("Can I pay with bitcoin?", "We take cards.", evidence=0.35))
    record(store, reply("How long do I have to return an item?", "Within 30 days [1].", evidence=0.8))  # no gap
    gaps = InsightsService(domain, store).gaps()
    assert [sorted(g.questions) for g in gaps] == [
        sorted(wraps),
        ["Can I pay with bitcoin?"],
        ["Do you have a store in Paris?"],
    ]
    first = gaps[0]
    assert (first.customers, first.refused, first.weak) == (4, 3, 1)
    assert first.sentence().startswith(f'4 customers asked about "{first.example}"; refused 3 times')
    assert gaps[2].sentence() == '1 customer asked about "Do you have a store in Paris?"; no document covers it.'


def test_analytics_count_the_recorded_turns(domain: Domain, store: FeedbackStore, filled) -> None:
    with sqlite3.connect(store.path) as db:  # the weather question was asked yesterday
        db.execute("UPDATE turns SET created = created - 86400 WHERE conversation = ?", (filled["weather"][0],))
    stats = InsightsService(domain, store).analytics()
    assert (stats.turns, stats.conversations) == (7, 6)
    assert stats.outcomes == {"answered": 3, "refused": 1, "hand-off": 1, "rule": 0, "withheld": 1, "error": 1}
    assert stats.rate("answered") == pytest.approx(3 / 7)
    assert (stats.thumbs_up, stats.thumbs_down) == (1, 1)
    today = InsightsService(domain, store).today()
    yesterday = today - timedelta(days=1)
    assert stats.per_day == [(yesterday.isoformat(), 1, 1), (today.isoformat(), 5, 6)]
    assert InsightsService(domain, store).analytics(since=today).turns == 6
    record(store, reply("is SHIPPING free", "Free over $50 [1]."))
    top = InsightsService(domain, store).analytics().top_questions
    assert top[0] == ("Is shipping free?", 2)  # the same words, however written


def test_days_are_the_business_days_of_its_opening_hours_time_zone(domain: Domain, store: FeedbackStore) -> None:
    import yaml

    conv, _ = record(store, reply("Is shipping free?", "Free over $50 [1]."))
    late = datetime(2026, 6, 30, 23, 30, tzinfo=UTC).timestamp()  # 11:30 on July 1st in Auckland (UTC+12 in June)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE turns SET created = ?", (late,))
    assert InsightsService(domain, store).analytics().per_day == [("2026-06-30", 1, 1)]  # no hours: UTC days
    spec_file = domain.root / "domain.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    spec["handoff"]["contact"]["opening_hours"] = {"timezone": "Pacific/Auckland", "monday": ["09:00-17:00"]}
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    local = InsightsService(load_domain(domain.root), store)
    assert local.analytics().per_day == [("2026-07-01", 1, 1)]
    assert found(local, since=date(2026, 7, 1), until=date(2026, 7, 1)) == {conv}
    assert found(local, until=date(2026, 6, 30)) == set()


def test_turns_served_by_the_turn_service_record_their_evidence(example_dir: Path, tmp_path: Path) -> None:
    from kit.services.assistant.admission import Admission
    from kit.services.assistant.chat import ChatService
    from kit.services.assistant.turns import TurnService

    domain = load_domain(example_dir)
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    turns = TurnService(ChatService.open(domain, engine=PlantedEngine()), store, Admission(1))
    turns.start("How long do I have to return an item?").finish()
    turns.start("Can you recommend a good python programming book?").finish()
    answered, refused = store.turns()
    assert answered["kind"] == "answer" and answered["evidence"] > 0.45
    assert refused["kind"] == "refuse" and refused["reason"]
    insights = InsightsService(domain, store)
    assert [f.first_question for f in insights.search(Search(show="refused"))] == [refused["question"]]
    assert [g.example for g in insights.gaps()] == [refused["question"]]


def test_the_tabs_build_and_their_callbacks_show_the_store(domain: Domain, store: FeedbackStore, filled) -> None:
    import gradio as gr

    from kit.ui.admin.insights import InsightsView, add_insight_tabs

    insights = InsightsService(domain, store)
    with gr.Blocks() as app:
        add_insight_tabs(insights)
    labels = {b.label for b in app.blocks.values() if isinstance(b, gr.Tab)}
    assert labels == {"Conversations", "Content gaps", "Analytics", "Eval report"}
    view = InsightsView(insights)
    table, picker, summary = view.search("sale", "all", "", "")
    assert [value for _, value in picker["choices"]] == [filled["returns"][0]]
    assert summary == "1 conversation found" and list(table["first question"]) == [
        "How long do I have to return an item?"
    ]
    _, _, error = view.search("", "all", "yesterday", "")
    assert error.startswith("error: 'yesterday' is not a day (From) — write it as YYYY-MM-DD")
    conv = filled["returns"][0]
    transcript, turn_picker, question, answer, _ = view.open(conv)
    assert turn_picker["value"] == str(filled["returns"][1][1]) and len(turn_picker["choices"]) == 2
    assert "**Customer:** And sale items?" in transcript and "thumbs up" in transcript
    assert (question, answer) == ("And sale items?", "Sale items are final sale.")
    last = str(filled["returns"][1][1])
    transcript, saved = view.correct(conv, last, "Can I return sale items?", "Sale items can be exchanged.")
    assert saved.startswith("Saved as `correction-")
    assert "**Corrected:** Sale items can be exchanged." in transcript
    _, refused = view.correct(conv, last, "Can I return sale items?", "")
    assert refused.startswith("error: the correction's answer is empty")
    summary, per_day, outcomes, thumbs, top = view.analytics("all")
    assert "**6** conversations, **7** questions" in summary
    assert sorted(per_day["count"]) == [6, 7] and set(per_day["what"]) == {"conversations", "questions"}
    assert dict(zip(outcomes["outcome"], outcomes["share"], strict=True))["refused"] == pytest.approx(1 / 7)
    assert list(thumbs["count"]) == [1, 1] and len(top) == 7
    text, plot = view.eval_report()
    assert text.startswith("No eval report yet — run: `kit eval ") and plot is None


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_an_owner_finds_a_thumbs_down_answer_and_corrects_it_in_a_real_browser(
    example_dir: Path, tmp_path: Path
) -> None:
    import base64

    from runtime_fixtures import serve
    from test_ui_browser import ARTIFACTS, browser, js, wait_for

    from kit.server.admin_login import AdminAccess
    from kit.server.app import build_server
    from kit.services.assistant.chat import ChatService
    from kit.services.training.data import read_conversations

    domain = load_domain(shutil.copytree(example_dir, tmp_path / "example"))  # indexed once per session
    for old in domain.build_dir.glob("feedback.sqlite3*"):  # turns other tests of the session recorded there
        old.unlink()
    store = FeedbackStore.for_domain(domain.build_dir, domain.spec.privacy)
    _, (wrong,) = record(store, reply("Do you gift wrap orders?", "Yes, for free [1]."))
    store.rate(wrong, up=False)
    record(store, reply("Is shipping free?", "Free over $50 [1]."))
    record(store, reply("What's the weather tomorrow?", "Sorry, I can only help…", "refuse", 0.1))
    for question in ("Can you gift wrap my order?", "Is gift wrapping available?", "can you giftwrap it for my mom"):
        record(store, reply(question, "Sorry, I can only help…", "refuse", 0.2))
    with sqlite3.connect(store.path) as db:  # over three days, for the plot: 1, 2, then 3 conversations
        db.execute(
            "UPDATE turns SET created = created - (CASE WHEN id = 1 THEN 2 WHEN id < 4 THEN 1 ELSE 0 END) * 86400"
        )
    app = build_server(ChatService.open(domain, engine=PlantedEngine()), admin=AdminAccess.from_secret("owner-pass"))
    for url in serve(app):
        with browser(tmp_path / "profile") as cdp:

            def page() -> str:
                return js(cdp, "document.body.innerText") or ""

            def click(selector: str) -> None:
                box = js(cdp, f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                              " return [r.x + r.width / 2, r.y + r.height / 2]; })()")  # fmt: skip
                for kind in ("mousePressed", "mouseReleased"):
                    cdp("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

            def type_into(selector: str, text: str) -> None:
                js(cdp, f"(() => {{ const e = document.querySelector({selector!r}); e.focus(); e.select(); }})()")
                cdp("Input.insertText", text=text)

            def tab(name: str) -> None:
                js(cdp, f"[...document.querySelectorAll('button[role=tab]')].find(b => b.innerText.includes({name!r}))"
                        ".click()")  # fmt: skip

            def screenshot(name: str) -> None:
                shot = base64.b64decode(cdp("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"])
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                (ARTIFACTS / name).write_bytes(shot)
                assert shot.startswith(b"\x89PNG")

            cdp("Page.navigate", url=url + "/admin/")
            wait_for(lambda: js(cdp, "!!document.querySelector('#password')"), 60)
            type_into("#password", "owner-pass")
            js(cdp, "document.querySelector('form').submit()")
            wait_for(lambda: "Conversations" in page(), 60)

            def listed() -> bool:  # the latest conversations, listed on load, in the table itself (a click on the tab
                tab("Conversations")  # before the page is ready is lost): else the listing could land after the search
                return "Do you gift wrap orders?" in (js(cdp, TABLE) or "")

            wait_for(listed, 60)
            type_into("#kit-admin-search textarea", "gift wrap orders")
            enter = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
            cdp("Input.dispatchKeyEvent", type="keyDown", text="\r", **enter)
            cdp("Input.dispatchKeyEvent", type="keyUp", **enter)
            wait_for(lambda: "1 conversation found" in page(), 60)
            wait_for(lambda: "Is shipping free?" not in (js(cdp, TABLE) or "Is shipping free?"), 60)
            assert "Do you gift wrap orders?" in js(cdp, TABLE)
            js(cdp, "window.scrollTo(0, 0)")
            cells = "[...document.querySelectorAll('#kit-admin-found [role=gridcell]')]"
            cell = f"{cells}.find(c => c.innerText.includes('gift wrap orders'))"
            js(cdp, f"{cell}.setAttribute('data-kit-cell', '1')")
            click("[data-kit-cell='1']")
            wait_for(lambda: "Customer:" in (js(cdp, TRANSCRIPT) or ""), 60)
            assert wait_for(lambda: js(cdp, ANSWER), 60) == "Yes, for free [1]."  # the recorded answer, to correct
            type_into("#kit-admin-answer textarea", "Not yet: we don't offer gift wrapping.")
            click("#kit-admin-save")
            try:
                wait_for(lambda: "Saved as" in page(), 60)
            finally:
                screenshot("console-conversations.png")
            assert "Corrected: Not yet: we don't offer gift wrapping." in page()
            tab("Content gaps")
            js(cdp, "document.querySelector('#kit-admin-gaps-go').click()")
            wait_for(lambda: "asked about" in (js(cdp, GAPS) or ""), 60)
            assert (js(cdp, GAPS) or "").startswith("3 customers asked about")
            screenshot("console-gaps.png")
            tab("Analytics")
            wait_for(lambda: js(cdp, "!!document.querySelector('#kit-admin-outcomes canvas, #kit-admin-outcomes svg')"),
                     60)  # fmt: skip
            wait_for(lambda: "6 conversations, 6 questions" in page(), 60)  # the summary may come after the plot
            screenshot("console-analytics.png")
    saved = [json.loads(line) for line in (domain.root / CORRECTIONS).read_text(encoding="utf-8").splitlines()]
    assert [m["content"] for m in saved[0]["messages"]] == [
        "Do you gift wrap orders?", "Not yet: we don't offer gift wrapping."
    ]  # fmt: skip
    trained = dict(read_conversations(domain))  # what the next `kit finetune` grounds and trains on
    assert trained["data/corrections.jsonl:1"].messages[-1].content == "Not yet: we don't offer gift wrapping."

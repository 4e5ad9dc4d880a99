"""Feedback store: turns, sources, latency and ratings in SQLite, personal data masked before writing."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from kit.services.assistant.reply import Reply, SourceRef
from kit.services.owner.feedback import FILE, FeedbackStore, new_conversation
from kit.settings import Privacy


def make_reply(question: str, answer: str) -> Reply:
    source = SourceRef(1, "docs/policies.md", "Returns", "line 6", "Unused items within 30 days.")
    reply = Reply(question, "answer", "", [source], {"role": "user", "content": question}, "test-model",
                  iter([answer]))  # fmt: skip
    reply.finish()
    return reply


def test_turns_are_stored_masked_with_sources_latency_and_ratings(tmp_path: Path) -> None:
    store = FeedbackStore.for_domain(tmp_path / "build")
    conv = new_conversation()
    q = "I'm jane@example.com, call me on (541) 555-0187; card 4111 1111 1111 1111. Returns?"
    first = store.record(conv, make_reply(q, "Within 30 days [1]. We'll write to jane@example.com."))
    second = store.record(new_conversation(), make_reply("Shipping?", "Free over $50."))
    store.rate(first, up=True)
    store.rate(second, up=False)
    rows = store.turns(conv)
    assert len(rows) == 1
    row = rows[0]
    assert row["question"] == "I'm [email], call me on [phone]; card [card]. Returns?"
    assert row["answer"] == "Within 30 days [1]. We'll write to [email]."
    assert row["rating"] == 1 and row["model"] == "test-model" and row["total_s"] is not None
    assert "docs/policies.md" in row["sources"]
    assert [r["rating"] for r in store.turns()] == [1, -1]
    raw = (tmp_path / "build" / FILE).read_bytes()
    assert b"jane@example.com" not in raw and b"4111" not in raw and b"555-0187" not in raw
    with sqlite3.connect(tmp_path / "build" / FILE) as db:
        assert db.execute("SELECT count(*) FROM turns").fetchone() == (2,)


def test_a_conversation_older_than_the_retention_is_gone_from_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "build" / FILE
    privacy = Privacy(retention_days=30, store_transcripts="full")
    store = FeedbackStore(path, privacy)
    old, recent = new_conversation(), new_conversation()
    store.record(old, make_reply("Do you stock the OLDMARKER-7781 stove?", "OLDANSWER-5523 is in stock."))
    store.record(recent, make_reply("And the NEWMARKER-2290 tent?", "Yes."))
    with sqlite3.connect(path) as db:  # the first conversation was held 31 days ago
        db.execute("UPDATE turns SET created = created - 31 * 86400 WHERE conversation = ?", (old,))
    assert b"OLDMARKER-7781" in path.read_bytes()
    reopened = FeedbackStore(path, privacy)  # the assistant starts: expired turns go, the file is compacted
    raw = path.read_bytes()
    assert b"OLDMARKER-7781" not in raw and b"OLDANSWER-5523" not in raw and old.encode() not in raw
    assert b"NEWMARKER-2290" in raw
    assert [t["conversation"] for t in reopened.turns()] == [recent]
    assert reopened.purge(now=time.time() + 31 * 86400) == 1  # and a day's purge once that one expires too
    assert b"NEWMARKER-2290" not in path.read_bytes() and reopened.turns() == []


def test_the_daily_purge_runs_until_the_store_closes(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / FILE, Privacy(retention_days=1))
    store.record(new_conversation(), make_reply("Shipping?", "Free over $50."))
    with sqlite3.connect(tmp_path / FILE) as db:
        db.execute("UPDATE turns SET created = created - 2 * 86400")
    thread = store.purge_daily(interval_s=0.05)
    assert thread is not None
    deadline = time.time() + 10
    while store.turns() and time.time() < deadline:
        time.sleep(0.05)
    store.close()
    thread.join(timeout=5)
    assert store.turns() == [] and not thread.is_alive()
    assert FeedbackStore(tmp_path / "other.sqlite3").purge_daily() is None  # no retention, no thread


def test_transcripts_kept_as_the_privacy_section_says(tmp_path: Path) -> None:
    said = "my name is Jane Doe, born 03/14/1985, I live at 1234 Oak Street Apt 5B; mail jane@example.com"
    masked = FeedbackStore(tmp_path / "m.sqlite3")  # the default: masked
    masked.record(new_conversation(), make_reply(said, "Thanks."))
    assert masked.turns()[0]["question"] == "my name is [name], born [dob], I live at [address]; mail [email]"
    full = FeedbackStore(tmp_path / "f.sqlite3", Privacy(store_transcripts="full"))
    full.record(new_conversation(), make_reply(said, "Thanks."))
    assert full.turns()[0]["question"] == said
    none = FeedbackStore(tmp_path / "n.sqlite3", Privacy(store_transcripts="none"))
    assert none.record(new_conversation(), make_reply(said, "Thanks.")) == 0
    assert none.turns() == [] and b"Jane" not in (tmp_path / "n.sqlite3").read_bytes()


def test_a_store_an_older_kit_wrote_is_migrated_and_keeps_its_turns(tmp_path: Path) -> None:
    path = tmp_path / FILE
    with sqlite3.connect(path) as db:  # the table as the first kit wrote it, with one turn
        db.executescript(
            "CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation TEXT NOT NULL, created REAL NOT"
            " NULL, question TEXT NOT NULL, answer TEXT NOT NULL, kind TEXT NOT NULL, sources TEXT NOT NULL, model TEXT"
            " NOT NULL, ttft_s REAL, total_s REAL, rating INTEGER);"
            "INSERT INTO turns (conversation, created, question, answer, kind, sources, model)"
            " VALUES ('old', 1.0, 'Returns?', 'Within 30 days.', 'answer', '[]', 'm');"
        )
    store = FeedbackStore(path, Privacy(store_transcripts="full"))
    reply = make_reply("Shipping?", "Free over $50.")
    reply.evidence, reply.withheld = 0.42, "a phone number the documents do not hold"
    store.record("new", reply)
    old, new = store.turns()
    assert (old["question"], old["evidence"], old["withheld"]) == ("Returns?", None, "")
    assert (new["evidence"], new["withheld"]) == (0.42, "a phone number the documents do not hold")
    FeedbackStore(path)  # opening it again changes nothing
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM turns").fetchone() == (2,)

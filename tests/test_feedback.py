"""Feedback store: turns, sources, latency and ratings in SQLite, personal data masked before writing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from kit.services.feedback import FILE, FeedbackStore, new_conversation
from kit.services.reply import Reply, SourceRef


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

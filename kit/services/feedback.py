"""Conversations, answers, sources, latency and thumbs up/down, in SQLite in the domain's build folder.

Personal data is masked before a row is written; nothing unmasked reaches the file.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kit.services.guardrails import mask_pii
from kit.services.reply import Reply

FILE = "feedback.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    created REAL NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    kind TEXT NOT NULL,
    sources TEXT NOT NULL,
    model TEXT NOT NULL,
    ttft_s REAL,
    total_s REAL,
    rating INTEGER
);
CREATE INDEX IF NOT EXISTS turns_conversation ON turns(conversation);
"""


def new_conversation() -> str:
    """A fresh conversation id."""
    return uuid.uuid4().hex


class FeedbackStore:
    """One SQLite file; a connection per call, so threads (Gradio's workers) never share one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    @classmethod
    def for_domain(cls, build_dir: Path) -> FeedbackStore:
        return cls(build_dir / FILE)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()

    def record(self, conversation: str, reply: Reply) -> int:
        """Store a finished turn (masked); its id, for a later rating."""
        sources = json.dumps([s.label() for s in reply.sources])
        row = (conversation, time.time(), mask_pii(reply.question), mask_pii(reply.text), reply.kind, sources,
               reply.model, reply.ttft_s, reply.total_s)  # fmt: skip
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO turns (conversation, created, question, answer, kind, sources, model, ttft_s, total_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid or 0)

    def rate(self, turn_id: int, up: bool) -> None:
        """Thumbs up (True) or down (False) on a stored turn."""
        with self._db() as db:
            db.execute("UPDATE turns SET rating = ? WHERE id = ?", (1 if up else -1, turn_id))

    def turns(self, conversation: str | None = None) -> list[dict[str, Any]]:
        """Stored turns, oldest first (all, or one conversation's)."""
        query, args = "SELECT * FROM turns", ()
        if conversation is not None:
            query, args = query + " WHERE conversation = ?", (conversation,)
        with self._db() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(query + " ORDER BY id", args)]

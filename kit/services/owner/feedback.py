"""Conversations, answers, sources, latency and thumbs up/down, in SQLite in the domain's build folder.

What is kept follows the domain's `privacy` section: transcripts masked (personal data replaced before a row is
written, so nothing unmasked reaches the file), in full, or not at all; turns older than `retention_days` are deleted
when the store opens and every day after, with SQLite's secure delete on and the file vacuumed, so their text is gone
from the file itself, not only from the table.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from kit.services.assistant.reply import Reply
from kit.services.safety.pii import mask_pii
from kit.settings import Privacy

logger = logging.getLogger(__name__)
DAY_S = 86_400.0

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
# Changes to a store written by an older kit, in order; PRAGMA user_version counts those applied. Only columns with a
# default are added, so an older kit still reads and writes a migrated file.
MIGRATIONS = [
    # 1: what the console's content gaps and filters read: the best retrieval similarity (None where nothing was
    # retrieved, as in turns recorded before), why the output guard withheld an answer, why a reply was fixed.
    """
    ALTER TABLE turns ADD COLUMN evidence REAL;
    ALTER TABLE turns ADD COLUMN withheld TEXT NOT NULL DEFAULT '';
    ALTER TABLE turns ADD COLUMN reason TEXT NOT NULL DEFAULT '';
    CREATE INDEX IF NOT EXISTS turns_created ON turns(created);
    """,
]


def purge_older(path: Path, table: str, retention_days: int | None, now: float | None = None) -> int:
    """Delete the rows of ``table`` (with a ``created`` time) older than the retention, then rebuild the file so
    nothing of them is left in its free pages; how many were deleted (0 without a retention)."""
    if retention_days is None:
        return 0
    cutoff = (time.time() if now is None else now) - retention_days * DAY_S
    with connect(path) as db:
        deleted = db.execute(f"DELETE FROM {table} WHERE created < ?", (cutoff,)).rowcount
    if deleted:
        db = sqlite3.connect(path, timeout=10)
        try:
            db.execute("VACUUM")
        finally:
            db.close()
        logger.info("deleted %d %s older than %d days from %s", deleted, table, retention_days, path)
    return deleted


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a store of kit's (one per call, so threads never share one), in a transaction, closed after;
    secure delete on: a deleted row's bytes are overwritten, not left in free pages."""
    db = sqlite3.connect(path, timeout=10)
    try:
        db.execute("PRAGMA secure_delete = ON")
        with db:
            yield db
    finally:
        db.close()


def new_conversation() -> str:
    """A fresh conversation id."""
    return uuid.uuid4().hex


def answer_shown(text: str, error: str = "") -> str:
    """An answer as the customer saw it: the text written, then the error's sentence when the turn failed."""
    return f"{text}\n\n⚠️ {error}".strip() if error else text


class FeedbackStore:
    """One SQLite file; a connection per call, so threads (Gradio's workers) never share one."""

    def __init__(self, path: Path, privacy: Privacy | None = None) -> None:
        self.path = path
        self.privacy = privacy or Privacy()
        self._stop = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()
        self.purge()

    @classmethod
    def for_domain(cls, build_dir: Path, privacy: Privacy | None = None) -> FeedbackStore:
        return cls(build_dir / FILE, privacy)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    def _migrate(self) -> None:
        """Create the table, or bring one an older kit wrote up to date; one writer at a time does it."""
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(SCHEMA):
                    db.execute(statement)
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in _statements(script):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {number}")
                    logger.info("feedback store %s migrated to version %d", self.path, number)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.close()

    def purge(self, now: float | None = None) -> int:
        """Delete the turns older than the retention and compact the file; how many were deleted."""
        return purge_older(self.path, "turns", self.privacy.retention_days, now)

    def purge_daily(self, interval_s: float = DAY_S) -> threading.Thread | None:
        """Purge every ``interval_s`` seconds in a daemon thread, until ``close``; None without a retention."""
        if self.privacy.retention_days is None:
            return None

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.purge()
                except sqlite3.Error as exc:  # a busy or locked file: the next round tries again
                    logger.warning("could not delete expired turns from %s: %s", self.path, exc)

        thread = threading.Thread(target=loop, name="kit-retention", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop the daily purge."""
        self._stop.set()

    def record(self, conversation: str, reply: Reply, error: str = "") -> int:
        """Store a finished turn as domain.yaml's privacy says (masked by default); its id, for a later rating, or
        0 when transcripts are not stored. A turn that failed (``error``) is stored as kind "error", with what the
        customer saw."""
        mode = self.privacy.store_transcripts
        if mode == "none":
            return 0
        clean = mask_pii if mode == "masked" else str
        sources = json.dumps([s.label() for s in reply.sources])
        row = (conversation, time.time(), clean(reply.question), clean(answer_shown(reply.text, error)),
               "error" if error else reply.kind, sources, reply.model, reply.ttft_s, reply.total_s,
               reply.evidence, reply.withheld, reply.reason)  # fmt: skip
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO turns (conversation, created, question, answer, kind, sources, model, ttft_s, total_s,"
                " evidence, withheld, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cur.lastrowid or 0)

    def rate(self, turn_id: int, up: bool) -> None:
        """Thumbs up (True) or down (False) on a stored turn."""
        with self._db() as db:
            db.execute("UPDATE turns SET rating = ? WHERE id = ?", (1 if up else -1, turn_id))

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows a read-only query gives, as dicts (the console's searches and counts)."""
        with self._db() as db:
            db.execute("PRAGMA query_only = ON")
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(sql, tuple(args))]

    def turn(self, turn_id: int) -> dict[str, Any] | None:
        """One stored turn by its id; None when there is none."""
        found = self.rows("SELECT * FROM turns WHERE id = ?", (turn_id,))
        return found[0] if found else None

    def turns(self, conversation: str | None = None) -> list[dict[str, Any]]:
        """Stored turns, oldest first (all, or one conversation's)."""
        query, args = "SELECT * FROM turns", ()
        if conversation is not None:
            query, args = query + " WHERE conversation = ?", (conversation,)
        with self._db() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(query + " ORDER BY id", args)]


def _statements(script: str) -> list[str]:
    """The statements of a script, to run one by one inside the caller's transaction (executescript commits)."""
    return [part.strip() for part in script.split(";") if part.strip()]

"""Leads: what a customer leaves when a hand-off finds the team away (name, an e-mail address or phone number, the
question), checked, then kept in SQLite beside the feedback store for the owner's console (a table and a CSV).

A lead is personal data the customer chose to give, so it is stored as written: the team needs the address to reply.
Leads older than the domain's ``privacy.retention_days`` are deleted when the store opens and whenever a lead is added.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.errors import KitError
from kit.services.owner.feedback import connect, purge_older
from kit.services.safety.pii import EMAIL

FILE = "leads.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS leads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    name TEXT NOT NULL,
    contact TEXT NOT NULL,
    question TEXT NOT NULL,
    conversation TEXT NOT NULL DEFAULT ''
)
"""
COLUMNS = ("id", "created", "name", "contact", "question", "conversation")
MAX_NAME, MAX_CONTACT, MAX_QUESTION = 120, 200, 2000
EMAIL_RE = re.compile(EMAIL)
PHONE = re.compile(r"\+?[\d\s().-]+")
CONVERSATION = re.compile(r"[A-Za-z0-9_.:-]{0,64}")


class BadLead(KitError):
    """A lead form with problems; the message lists every one of them."""


@dataclass(frozen=True)
class Lead:
    """A checked lead."""

    name: str
    contact: str
    question: str
    conversation: str = ""


def check_lead(name: str, contact: str, question: str, conversation: str = "") -> Lead:
    """The lead, trimmed, or BadLead naming every field that is wrong and how to fix it."""
    name, contact, question = name.strip(), contact.strip(), question.strip()
    problems = []
    if not name:
        problems.append("your name is empty")
    elif len(name) > MAX_NAME:
        problems.append(f"your name is longer than {MAX_NAME} characters")
    if not contact:
        problems.append("give an e-mail address or a phone number")
    elif len(contact) > MAX_CONTACT or not is_reachable(contact):
        problems.append(f"'{contact[:60]}' is neither an e-mail address nor a phone number")
    if not question:
        problems.append("your question is empty")
    elif len(question) > MAX_QUESTION:
        problems.append(f"your question is longer than {MAX_QUESTION} characters")
    if not CONVERSATION.fullmatch(conversation):
        problems.append("the conversation id is not one this assistant gave")
    if problems:
        raise BadLead("; ".join(problems), "fix it and send the form again")
    return Lead(name, contact, question, conversation)


def is_reachable(contact: str) -> bool:
    """An e-mail address, or a phone number of 7 to 15 digits (ITU's longest), spaces and ()-. allowed."""
    if "@" in contact:
        return EMAIL_RE.fullmatch(contact) is not None
    digits = sum(ch.isdigit() for ch in contact)
    return PHONE.fullmatch(contact) is not None and 7 <= digits <= 15


class LeadStore:
    """One SQLite file; a connection per call, as the feedback store does."""

    def __init__(self, path: Path, retention_days: int | None = None) -> None:
        self.path = path
        self.retention_days = retention_days
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute(SCHEMA)
        self.purge()

    @classmethod
    def beside(cls, feedback_db: Path, retention_days: int | None = None) -> LeadStore:
        """The lead store in the feedback store's folder."""
        return cls(feedback_db.parent / FILE, retention_days)

    def purge(self, now: float | None = None) -> int:
        """Delete the leads older than the retention and compact the file; how many were deleted."""
        return purge_older(self.path, "leads", self.retention_days, now)

    def _db(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    def add(self, name: str, contact: str, question: str, conversation: str = "") -> int:
        """Check and store a lead; its id. BadLead (nothing stored) when a field is wrong."""
        lead = check_lead(name, contact, question, conversation)
        self.purge()
        with self._db() as db:
            cur = db.execute(
                "INSERT INTO leads (created, name, contact, question, conversation) VALUES (?, ?, ?, ?, ?)",
                (time.time(), lead.name, lead.contact, lead.question, lead.conversation),
            )
            return int(cur.lastrowid or 0)

    def leads(self) -> list[dict[str, Any]]:
        """Every lead, newest first."""
        with self._db() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM leads ORDER BY id DESC")]

    def csv_text(self) -> str:
        """Every lead as CSV (a header, then newest first), the time as ISO 8601 UTC."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for lead in self.leads():
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(lead["created"]))
            writer.writerow([lead["id"], when, *(_cell(lead[c]) for c in COLUMNS[2:])])
        return out.getvalue()


def _cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ (a phone number's + aside) would run as a
    formula (CSV injection)."""
    risky = value[:1] in ("=", "@", "\t", "\r") or (value[:1] in ("+", "-") and not PHONE.fullmatch(value))
    return "'" + value if risky else value

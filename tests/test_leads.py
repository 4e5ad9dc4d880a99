"""The lead service: what a lead form accepts, what it refuses (every problem named, nothing stored), the CSV."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import pytest

from kit.services.owner.leads import BadLead, LeadStore, check_lead, is_reachable


@pytest.mark.parametrize(
    ("contact", "ok"),
    [
        ("ada@example.org", True), ("+1 (541) 555-0187", True), ("020 7946 0958", True), ("5550100", True),
        ("ada@example", False), ("ada example.org", False), ("555-01", False), ("call me", False),
        ("+1 555 0100 0000 0000 99", False), ("@@", False),
    ],
)  # fmt: skip
def test_an_email_address_or_a_phone_number_reaches_someone(contact: str, ok: bool) -> None:
    assert is_reachable(contact) is ok


def test_every_problem_is_named_at_once_and_nothing_is_stored(tmp_path: Path) -> None:
    store = LeadStore(tmp_path / "leads.sqlite3")
    with pytest.raises(BadLead) as caught:
        store.add("", "nope", "x" * 2001)
    message = str(caught.value)
    assert "your name is empty" in message and "'nope' is neither an e-mail address nor a phone number" in message
    assert "longer than 2000 characters" in message and message.endswith("fix it and send the form again")
    with pytest.raises(BadLead, match="give an e-mail address or a phone number"):
        check_lead("Ada", "   ", "Where is my order?")
    with pytest.raises(BadLead, match="conversation id"):
        check_lead("Ada", "ada@example.org", "Where is my order?", "'; DROP TABLE leads; --")
    assert store.leads() == []


def test_a_good_lead_is_stored_trimmed_and_exported(tmp_path: Path) -> None:
    store = LeadStore.beside(tmp_path / "build" / "feedback.sqlite3")
    assert store.path == tmp_path / "build" / "leads.sqlite3"
    first = store.add("  Ada Lovelace ", " +44 20 7946 0958 ", " Do you ship to London? ", "abc123")
    second = store.add("Mallory", "m@example.org", "@SUM(1+1) -2+3 =cmd")
    assert second > first
    rows = list(csv.DictReader(io.StringIO(store.csv_text())))
    assert [r["name"] for r in rows] == ["Mallory", "Ada Lovelace"]  # newest first
    assert rows[1]["contact"] == "+44 20 7946 0958" and rows[1]["conversation"] == "abc123"
    assert rows[0]["question"] == "'@SUM(1+1) -2+3 =cmd"  # a formula is written as text
    assert rows[1]["created"].endswith("Z")


def test_leads_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    store = LeadStore(tmp_path / "leads.sqlite3", retention_days=30)
    store.add("Ada", "ada@example.org", "Do you ship to London?")
    assert store.purge(now=time.time() + 29 * 86_400) == 0 and len(store.leads()) == 1
    assert store.purge(now=time.time() + 31 * 86_400) == 1 and store.leads() == []
    assert b"ada@example.org" not in (tmp_path / "leads.sqlite3").read_bytes()  # not left in the file's free pages
    forever = LeadStore(tmp_path / "kept.sqlite3")
    forever.add("Ada", "ada@example.org", "Do you ship to London?")
    assert forever.purge(now=time.time() + 3650 * 86_400) == 0

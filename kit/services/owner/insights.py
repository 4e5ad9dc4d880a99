"""What the owner's console shows of the conversations: search, the turns of one, corrections, content gaps,
analytics and the latest eval report, all read from the domain's feedback store (kit/services/owner/feedback.py).

The console (kit/ui/admin/insights.py) calls this service only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from kit.domain import Domain
from kit.errors import DataError
from kit.records import Conversation
from kit.services.owner import corrections
from kit.services.owner.analytics import Analytics, analytics
from kit.services.owner.content_gaps import SIMILAR, WEAK_BELOW, Embed, Gap, find_gaps, is_gap
from kit.services.owner.feedback import FeedbackStore

logger = logging.getLogger(__name__)

Show = Literal["all", "thumbs up", "thumbs down", "refused", "hand-off", "withheld", "error", "corrected"]
SHOW: tuple[str, ...] = get_args(Show)
# The SQL condition on a turn for each choice but "corrected" (which reads the corrections file).
CONDITION = {
    "all": "1",
    "thumbs up": "rating = 1",
    "thumbs down": "rating = -1",
    "refused": "kind = 'refuse'",
    "hand-off": "kind = 'handoff'",
    "withheld": "withheld != ''",
    "error": "kind = 'error'",
}
# What the listing marks a conversation with, when any of its turns has it.
MARKS = {
    "thumbs up": "t.rating IS 1",
    "thumbs down": "t.rating IS -1",
    "refused": "t.kind = 'refuse'",
    "hand-off": "t.kind = 'handoff'",
    "withheld": "t.withheld != ''",
    "error": "t.kind = 'error'",
}
LIMIT = 200  # conversations a search lists, the latest first
GAP_TURNS = 5_000  # the latest gap questions grouped; older ones rarely matter once the documents changed


@dataclass(frozen=True)
class Search:
    """What the owner looks for: words in a question or answer, a kind of turn, a range of days (the business's)."""

    text: str = ""
    show: Show = "all"
    since: date | None = None
    until: date | None = None  # inclusive


@dataclass(frozen=True)
class Found:
    """One conversation a search found."""

    conversation: str
    started: float
    turns: int
    first_question: str
    marks: str  # what happened in it: thumbs up, thumbs down, refused hand-off withheld error


class InsightsService:
    """Reads the feedback store for the owner, and saves corrections into the domain's training data."""

    def __init__(self, domain: Domain, store: FeedbackStore, embed: Embed | None = None) -> None:
        self.domain = domain
        self.store = store
        self._embed = embed

    @property
    def zone(self) -> tzinfo:
        """The business's time zone (the hand-off's opening hours'), UTC without one: what a day is here."""
        hours = self.domain.spec.handoff.contact.opening_hours
        return ZoneInfo(hours.timezone) if hours is not None else UTC

    @property
    def zone_name(self) -> str:
        return str(self.zone)

    def today(self) -> date:
        return datetime.now(self.zone).date()

    def _start_of(self, day: date) -> float:
        return datetime.combine(day, time.min, self.zone).timestamp()

    @property
    def embed(self) -> Embed:
        """The domain's embedder, loaded when content gaps are first asked for."""
        if self._embed is None:
            from kit.components.embedding import Embedder

            self._embed = Embedder(self.domain.spec.retrieval.embedding_model).embed
        return self._embed

    # --- conversations ---------------------------------------------------------------------------------------------

    def search(self, search: Search, limit: int = LIMIT) -> list[Found]:
        """The conversations holding a turn that matches ``search``, the latest first."""
        if search.show not in SHOW:
            raise DataError(f"unknown kind of turn '{search.show}'", f"use one of: {', '.join(SHOW)}")
        where, args = self._where(search)
        rows = self.store.rows(
            f"WITH hit AS (SELECT conversation, max(id) AS last FROM turns WHERE {where} GROUP BY conversation"
            " ORDER BY last DESC LIMIT ?) "
            "SELECT t.conversation, min(t.created) AS started, count(*) AS turns, (SELECT question FROM turns f"
            " WHERE f.conversation = t.conversation ORDER BY f.id LIMIT 1) AS first_question, "
            + ", ".join(f'max({condition}) AS "{name}"' for name, condition in MARKS.items())
            + " FROM turns t JOIN hit ON hit.conversation = t.conversation GROUP BY t.conversation"
            " ORDER BY max(hit.last) DESC",
            [*args, limit],
        )
        return [
            Found(r["conversation"], r["started"], r["turns"], r["first_question"], ", ".join(m for m in MARKS if r[m]))
            for r in rows
        ]

    def _where(self, search: Search) -> tuple[str, list[Any]]:
        parts, args = [], []
        if search.show == "corrected":
            turn_ids = self._corrected_turns()
            parts.append(f"id IN ({', '.join('?' * len(turn_ids))})" if turn_ids else "0")
            args += turn_ids
        else:
            parts.append(CONDITION[search.show])
        if search.text.strip():
            parts.append("(question LIKE ? ESCAPE '\\' OR answer LIKE ? ESCAPE '\\')")
            pattern = "%" + _escape_like(search.text.strip()) + "%"
            args += [pattern, pattern]
        if search.since is not None:
            parts.append("created >= ?")
            args.append(self._start_of(search.since))
        if search.until is not None:
            parts.append("created < ?")
            args.append(self._start_of(search.until + timedelta(days=1)))
        return " AND ".join(parts), args

    def _corrected_turns(self) -> list[int]:
        """The stored turns the corrections file holds a correction of."""
        saved = corrections.corrected(self.domain)
        named = sorted({n for n in map(corrections.turn_of, saved) if n is not None})
        if not named:
            return []
        turns = self.store.rows(
            f"SELECT id, conversation FROM turns WHERE id IN ({', '.join('?' * len(named))})", named
        )
        return [t["id"] for t in turns if corrections.correction_id(t) in saved]

    def turns(self, conversation: str) -> list[dict[str, Any]]:
        """The stored turns of one conversation, oldest first; each with its correction's answer, if any."""
        saved = corrections.corrected(self.domain)
        found = self.store.turns(conversation)
        for turn in found:
            fix = saved.get(corrections.correction_id(turn))
            turn["correction"] = fix.messages[-1].content if fix else None
        return found

    def correct(self, turn_id: int, answer: str, question: str | None = None) -> Conversation:
        """Save the owner's ``answer`` to stored turn ``turn_id`` (its question reworded if ``question`` is given) as
        a training conversation in data/corrections.jsonl; nothing is written when it is not valid."""
        turn = self.store.turn(turn_id)
        if turn is None:
            raise DataError(f"no stored turn {turn_id}", "pick an answer from a conversation the search lists")
        record = corrections.correction(turn, answer, question)
        corrections.save(self.domain, record)
        return record

    # --- content gaps, analytics, eval ---------------------------------------------------------------------------

    def gaps(self, weak_below: float = WEAK_BELOW, similar: float = SIMILAR, since: date | None = None) -> list[Gap]:
        """Questions refused or answered on weak evidence, grouped by meaning; biggest groups first."""
        start = self._start_of(since) if since else 0.0
        rows = self.store.rows(
            "SELECT * FROM turns WHERE created >= ? AND (kind = 'refuse' OR (kind = 'answer' AND evidence < ?))"
            " ORDER BY id DESC LIMIT ?",
            (start, weak_below, GAP_TURNS),
        )
        return find_gaps([r for r in reversed(rows) if is_gap(r, weak_below)], self.embed, similar)

    def analytics(self, since: date | None = None) -> Analytics:
        """Conversations per day, outcomes, thumbs and top questions of the stored turns (since a day)."""
        rows = self.store.rows(
            "SELECT * FROM turns WHERE created >= ? ORDER BY id", (self._start_of(since) if since else 0,)
        )
        return analytics(rows, self.zone)

    def eval_report(self) -> tuple[str, Path | None]:
        """The domain's latest eval report (Markdown, plot), or how to make one."""
        from kit.services.evaluation.report import latest

        text, plot = latest(self.domain.build_dir / "eval")
        return text or f"No eval report yet — run: `kit eval {self.domain.root}`", plot


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

"""Usage figures from the stored turns: conversations per day, how turns ended, thumbs, the most asked questions.

Days are calendar days in the business's time zone (``InsightsService.zone``). A turn counts as withheld when the
output guard cut its answer off, whatever its kind; answered means a model answer that was not withheld. Errors are
turns that failed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

OUTCOMES = ("answered", "refused", "hand-off", "rule", "withheld", "error")
WORDS = re.compile(r"\w+")


def outcome(turn: dict[str, Any]) -> str:
    """How a stored turn ended, one of ``OUTCOMES``."""
    if turn.get("withheld"):
        return "withheld"
    return {"answer": "answered", "refuse": "refused", "handoff": "hand-off"}.get(turn["kind"], turn["kind"])


def day(created: float, zone: tzinfo) -> str:
    """The date of a stored timestamp in ``zone``, as YYYY-MM-DD."""
    return datetime.fromtimestamp(created, zone).date().isoformat()


@dataclass(frozen=True)
class Analytics:
    """What the console's Analytics tab plots."""

    turns: int
    conversations: int
    per_day: list[tuple[str, int, int]]  # (day, conversations started, turns)
    outcomes: dict[str, int]  # count per outcome, every outcome present
    thumbs_up: int
    thumbs_down: int
    top_questions: list[tuple[str, int]]  # (question as first asked, times asked), most asked first

    def rate(self, name: str) -> float:
        """Share of turns with outcome ``name`` (0 when there are none)."""
        return self.outcomes[name] / self.turns if self.turns else 0.0


def analytics(turns: Sequence[dict[str, Any]], zone: tzinfo, top: int = 10) -> Analytics:
    """The figures of ``turns`` (oldest first, as the store gives them), by days in ``zone``."""
    started: dict[str, str] = {}
    turns_per_day: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    first_wording: dict[str, str] = {}
    for t in turns:
        when = day(t["created"], zone)
        started.setdefault(t["conversation"], when)
        turns_per_day[when] += 1
        key = " ".join(WORDS.findall(t["question"].casefold()))
        if key:
            asked[key] += 1
            first_wording.setdefault(key, t["question"])
    convs_per_day = Counter(started.values())
    per_day = [(d, convs_per_day[d], turns_per_day[d]) for d in sorted(turns_per_day)]
    outcomes = Counter(outcome(t) for t in turns)
    return Analytics(
        turns=len(turns),
        conversations=len(started),
        per_day=per_day,
        outcomes={name: outcomes[name] for name in OUTCOMES},
        thumbs_up=sum(1 for t in turns if t["rating"] == 1),
        thumbs_down=sum(1 for t in turns if t["rating"] == -1),
        top_questions=[(first_wording[k], n) for k, n in sorted(asked.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
    )

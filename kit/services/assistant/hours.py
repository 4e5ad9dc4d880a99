"""Opening hours: whether the hand-off contact is staffed at a moment, and when it is next, in the domain's time zone.

Ranges are local wall-clock times (domain.yaml's ``handoff.contact.opening_hours``); each becomes an instant through
the IANA zone, so daylight saving moves it as the clocks move. A range belongs to the day it starts on: one that ends
before it starts runs past midnight, and a holiday closes the ranges that start on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from kit.settings import WEEKDAYS, OpeningHours

SEARCH_DAYS = 400  # how far ahead the next opening is looked for (a long holiday closure included)


@dataclass(frozen=True)
class HoursStatus:
    """Open now, or closed with the next opening (local time; None when none is found within a year)."""

    open: bool
    back: datetime | None = None


class Hours:
    """A contact's opening hours, compiled once."""

    def __init__(self, hours: OpeningHours) -> None:
        self.hours = hours
        self.zone = ZoneInfo(hours.timezone)
        self.holidays = frozenset(hours.holidays)

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """The opening ranges that start on local ``day``, as UTC instants (start, end)."""
        if day in self.holidays:
            return []
        out = []
        for item in getattr(self.hours, WEEKDAYS[day.weekday()]):
            start_text, end_text = item.split("-")
            start = datetime.combine(day, _clock(start_text), tzinfo=self.zone)
            end_day = day + timedelta(days=1) if end_text == "24:00" or end_text <= start_text else day
            end = datetime.combine(end_day, _clock(end_text), tzinfo=self.zone)
            out.append((start.astimezone(UTC), end.astimezone(UTC)))
        return out

    def status(self, now: datetime) -> HoursStatus:
        """Open at ``now`` (an aware datetime; a naive one is read as UTC), or closed until when."""
        instant = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC)
        today = instant.astimezone(self.zone).date()
        for day in (today - timedelta(days=1), today):
            if any(start <= instant < end for start, end in self.intervals(day)):
                return HoursStatus(True)
        for offset in range(SEARCH_DAYS):
            starts = [start for start, _ in self.intervals(today + timedelta(days=offset)) if start > instant]
            if starts:
                return HoursStatus(False, min(starts).astimezone(self.zone))
        return HoursStatus(False)

    def back_text(self, now: datetime, back: datetime | None) -> str:
        """When the team is back, as a customer reads it: 'today at 14:00 PST', 'tomorrow at 09:00 PST' or
        'on Monday 7 December at 09:00 PST'."""
        if back is None:
            return "as soon as they can"
        today = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(self.zone).date()
        at = f"at {back:%H:%M} {back.tzname()}"
        if back.date() == today:
            return f"today {at}"
        if back.date() == today + timedelta(days=1):
            return f"tomorrow {at}"
        return f"on {back:%A} {back.day} {back:%B} {at}"


def _clock(text: str) -> time:
    return time(0, 0) if text == "24:00" else time.fromisoformat(text)

"""Opening hours with a fixed clock, and the hand-off they change: inside, outside, a holiday, a range past midnight,
a time zone whose date differs from UTC's, daylight saving; an emergency outside hours keeps its fixed response."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from conftest import EXAMPLE, ROOT, TEMPLATES
from pydantic import ValidationError

from kit.domain import load_domain
from kit.services.assistant.hours import Hours
from kit.services.safety.guardrails import Guardrails
from kit.settings import OpeningHours

LA = ZoneInfo("America/Los_Angeles")
WEEK = {d: ["09:00-17:00"] for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}


def hours(**extra: object) -> Hours:
    return Hours(OpeningHours.model_validate({"timezone": "America/Los_Angeles", **WEEK, **extra}))


def test_inside_and_outside_the_hours_and_the_next_opening() -> None:
    shop = hours(saturday=["10:00-14:00"])
    assert shop.status(datetime(2026, 12, 2, 10, 30, tzinfo=LA)).open  # a Wednesday morning
    evening = datetime(2026, 12, 2, 17, 0, tzinfo=LA)  # closing time itself is closed
    closed = shop.status(evening)
    assert not closed.open and closed.back == datetime(2026, 12, 3, 9, 0, tzinfo=LA)
    assert shop.back_text(evening, closed.back) == "tomorrow at 09:00 PST"
    friday_night = datetime(2026, 12, 4, 20, 0, tzinfo=LA)
    assert shop.status(friday_night).back == datetime(2026, 12, 5, 10, 0, tzinfo=LA)
    sunday = datetime(2026, 12, 6, 8, 0, tzinfo=LA)
    back = shop.status(sunday).back
    assert back == datetime(2026, 12, 7, 9, 0, tzinfo=LA) and shop.back_text(sunday, back) == "tomorrow at 09:00 PST"
    early = datetime(2026, 12, 2, 7, 0, tzinfo=LA)
    assert shop.back_text(early, shop.status(early).back) == "today at 09:00 PST"


def test_a_holiday_is_closed_all_day_and_the_next_opening_skips_it() -> None:
    shop = hours(holidays=["2026-12-25"])
    christmas_noon = datetime(2026, 12, 25, 12, 0, tzinfo=LA)  # a Friday
    status = shop.status(christmas_noon)
    assert not status.open and status.back == datetime(2026, 12, 28, 9, 0, tzinfo=LA)
    assert shop.back_text(christmas_noon, status.back) == "on Monday 28 December at 09:00 PST"


def test_the_domain_time_zone_decides_the_day_not_utc() -> None:
    tokyo = Hours(OpeningHours(timezone="Asia/Tokyo", tuesday=["08:00-12:00"]))
    # Monday 23:30 UTC is Tuesday 08:30 in Tokyo: open, though UTC's day is Monday
    assert tokyo.status(datetime(2026, 11, 30, 23, 30, tzinfo=UTC)).open
    assert not tokyo.status(datetime(2026, 12, 1, 23, 30, tzinfo=UTC)).open  # Wednesday 08:30 there


def test_a_range_past_midnight_belongs_to_the_day_it_starts_on() -> None:
    bar = Hours(OpeningHours(timezone="Europe/Berlin", friday=["22:00-02:00"], holidays=[date(2026, 12, 11)]))
    berlin = ZoneInfo("Europe/Berlin")
    assert bar.status(datetime(2026, 12, 4, 23, 0, tzinfo=berlin)).open  # Friday night
    assert bar.status(datetime(2026, 12, 5, 1, 30, tzinfo=berlin)).open  # Saturday 01:30, Friday's range
    assert not bar.status(datetime(2026, 12, 5, 2, 0, tzinfo=berlin)).open
    assert not bar.status(datetime(2026, 12, 12, 1, 0, tzinfo=berlin)).open  # Friday the 11th was a holiday


def test_daylight_saving_moves_the_hours_with_the_clocks() -> None:
    shop = hours()
    # Los Angeles springs forward on Sunday 14 March 2027: 09:00 is 17:00 UTC before, 16:00 UTC after.
    assert shop.status(datetime(2027, 3, 12, 16, 30, tzinfo=UTC)).open is False  # Friday 08:30 PST
    assert shop.status(datetime(2027, 3, 15, 16, 30, tzinfo=UTC)).open  # Monday 09:30 PDT
    sunday = datetime(2027, 3, 14, 12, 0, tzinfo=UTC)
    back = shop.status(sunday).back
    assert back is not None and back.astimezone(UTC) == datetime(2027, 3, 15, 16, 0, tzinfo=UTC)
    assert shop.back_text(sunday, back) == "tomorrow at 09:00 PDT"


def test_bad_hours_are_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError, match="HH:MM-HH:MM"):
        OpeningHours(timezone="UTC", monday=["9-5"])
    with pytest.raises(ValidationError, match="unknown time zone"):
        OpeningHours(timezone="Pacific Time", monday=["09:00-17:00"])
    with pytest.raises(ValidationError, match="no opening on any weekday"):
        OpeningHours(timezone="UTC")


def _guardrails(tmp_path: Path, when: datetime) -> Guardrails:
    """The example domain with weekday hours and an emergency rule, its clock fixed at ``when``."""
    root = tmp_path / "example"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build"))
    spec = yaml.safe_load((root / "domain.yaml").read_text(encoding="utf-8"))
    spec["handoff"]["contact"]["opening_hours"] = {"timezone": "America/Los_Angeles", **WEEK}
    spec["rules"].append({"id": "emergency", "instruction": "Send emergencies to 911.",
                          "patterns": [r"\bchest pain\b"], "response": "Call 911 now."})  # fmt: skip
    (root / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return Guardrails(load_domain(root).spec, clock=lambda: when)


def test_the_hand_off_gives_the_contact_in_hours_and_the_lead_form_outside(tmp_path: Path) -> None:
    inside = _guardrails(tmp_path / "in", datetime(2026, 12, 2, 10, 0, tzinfo=LA)).screen("I want a real person")
    assert inside.kind == "handoff" and not inside.lead_form and "help@example.com" in inside.message
    outside = _guardrails(tmp_path / "out", datetime(2026, 12, 5, 22, 0, tzinfo=LA)).screen("I want a real person")
    assert outside.kind == "handoff" and outside.lead_form and outside.reason == "human"
    assert "back on Monday 7 December at 09:00 PST" in outside.message


def test_an_emergency_outside_hours_gets_its_fixed_response(tmp_path: Path) -> None:
    guards = _guardrails(tmp_path, datetime(2026, 12, 6, 3, 0, tzinfo=LA))  # Sunday, 3 a.m.
    verdict = guards.screen("I have chest pain and need a real person")
    assert verdict.kind == "rule" and verdict.message == "Call 911 now." and not verdict.lead_form


@pytest.mark.parametrize("name", TEMPLATES)
def test_each_template_hands_off_after_hours_with_the_lead_form_and_keeps_its_rules(name: str) -> None:
    spec = load_domain(ROOT / "domains" / name).spec
    hours = spec.handoff.contact.opening_hours
    assert hours is not None
    sunday_night = datetime(2026, 12, 6, 23, 0, tzinfo=ZoneInfo(hours.timezone))
    guards = Guardrails(spec, clock=lambda: sunday_night)
    verdict = guards.screen("I want to talk to a real person")
    assert verdict.kind == "handoff" and verdict.lead_form and "back tomorrow at " in verdict.message
    assert "{" not in verdict.message
    staffed = Guardrails(spec, clock=lambda: sunday_night, hours=False).screen("I want to talk to a real person")
    assert not staffed.lead_form and spec.handoff.contact.name in staffed.message  # what synthetic data teaches
    domain = load_domain(ROOT / "domains" / name)
    items = [json.loads(line) for line in domain.path(spec.eval.set).read_text(encoding="utf-8").splitlines() if line]
    rule_items = [i for i in items if i.get("expect") == "rule"]
    responses = {r.id: r.response for r in spec.rules}
    assert rule_items
    for item in rule_items:  # the emergencies and other rules of the development set, at 11 p.m. on a Sunday
        verdict = guards.screen(item["question"])
        assert (verdict.kind, verdict.message, verdict.lead_form) == ("rule", responses[item["rule"]], False)


def test_kit_validate_names_bad_hours_and_origins_by_line(run_kit: Any, tmp_path: Path) -> None:
    root = tmp_path / "example"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build"))
    spec_file = root / "domain.yaml"
    text = spec_file.read_text(encoding="utf-8")
    hours = "    opening_hours:\n      timezone: Pacific\n      monday: ['9-17']\n"
    text = text.replace("    hours: Mon–Fri 9:00–17:00\n", "    hours: Mon–Fri 9:00–17:00\n" + hours)
    spec_file.write_text(text + "serve:\n  allowed_origins: ['https://shop.example.com/']\n", encoding="utf-8")
    result = run_kit("validate", str(root))
    assert result.code == 1 and "Traceback" not in result.err
    assert "unknown time zone 'Pacific'" in result.err and "'9-17' is not an opening range" in result.err
    assert "'https://shop.example.com/' is not an origin" in result.err
    spec_file.write_text(text.replace("timezone: Pacific", "timezone: UTC").replace("'9-17'", "'09:00-17:00'")
                         .replace("    opening_hours:\n", "    opening_hours:\n      holidays: [2026-13-01]\n"),
                         encoding="utf-8")  # fmt: skip
    result = run_kit("validate", str(root))
    assert result.code == 1 and "Traceback" not in result.err
    assert "domain.yaml:21: holds '2026-13-01', a date that does not exist" in result.err

"""Guardrails from domain.yaml, on each shipped domain's eval items, and PII masking for stored logs."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import ROOT, TEMPLATES

from kit.domain import load_domain
from kit.services.safety.guardrails import Guardrails
from kit.services.safety.pii import mask_pii

REFUSAL_FLOOR = 0.85  # retail's development set: 88% ("Any stock tips for me?" reads as in-domain)
FALSE_REFUSAL_CEILING = 0.05


def eval_items(domain: Any, expect: str) -> list[dict[str, Any]]:
    lines = domain.path(domain.spec.eval.set).read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    return [i for i in items if i.get("expect", "answer") == expect]


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_rule_item_gets_its_rules_fixed_response(name: str) -> None:
    domain = load_domain(ROOT / "domains" / name)
    guard = Guardrails(domain.spec)
    responses = {r.id: r.response for r in domain.spec.rules}
    for item in eval_items(domain, "rule"):
        verdict = guard.screen(item["question"])
        assert (verdict.kind, verdict.reason) == ("rule", item["rule"]), item["question"]
        assert verdict.message == responses[item["rule"]]


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_handoff_item_gets_the_handoff_message_with_the_contact(name: str) -> None:
    domain = load_domain(ROOT / "domains" / name)
    contact = domain.spec.handoff.contact
    zone = ZoneInfo(contact.opening_hours.timezone if contact.opening_hours else "UTC")
    guard = Guardrails(domain.spec, clock=lambda: datetime(2026, 12, 2, 12, 0, tzinfo=zone))  # a Wednesday noon: open
    own = {t.id: " ".join(t.message.split()) for t in domain.spec.handoff.triggers if t.message}
    for item in eval_items(domain, "handoff"):
        verdict = guard.screen(item["question"])
        assert verdict.kind == "handoff", item["question"]
        assert "{contact}" not in verdict.message
        if verdict.reason in own:  # a trigger with its own route (the clinic's refills go to the nurse team)
            assert " ".join(verdict.message.split()) == own[verdict.reason]
            continue
        assert contact.name in verdict.message
        assert all(v in verdict.message for v in (contact.email, contact.phone) if v)


@pytest.mark.parametrize("name", TEMPLATES)
def test_off_topic_refusals_and_false_refusals_hold_on_the_development_set(name: str, shipped) -> None:
    """A regression floor for the scope check on eval.jsonl (the development set, where tuning is allowed). The
    goals in domain.yaml are judged by `kit eval --gate` on the held-out split, not here."""
    from kit.components.embedding import Embedder
    from kit.services.retrieval.retrieve import Retriever

    domain = shipped(name)
    retriever = Retriever.open(domain)
    guard = Guardrails(domain.spec, Embedder(domain.spec.retrieval.embedding_model).embed)

    def refused(question: str) -> bool:
        return guard.check(question, retriever.retrieve(question)).kind == "refuse"

    off_topic = [refused(i["question"]) for i in eval_items(domain, "refuse")]
    in_domain = [refused(i["question"]) for i in eval_items(domain, "answer")]
    assert off_topic and sum(off_topic) / len(off_topic) >= REFUSAL_FLOOR
    assert in_domain and sum(in_domain) / len(in_domain) <= FALSE_REFUSAL_CEILING
    verdict = guard.check(eval_items(domain, "refuse")[0]["question"], [])
    assert verdict.message in ("", domain.spec.scope.refusal_message)


def test_rules_come_before_handoff(example_copy) -> None:
    guard = Guardrails(load_domain(example_copy).spec)
    verdict = guard.screen("I want a real person, my card is 4111 1111 1111 1111")
    assert (verdict.kind, verdict.reason) == ("rule", "card_numbers")


def test_no_domain_is_named_in_the_runtime_code() -> None:
    runtime = ["kit/services/safety/guardrails.py", "kit/services/assistant/chat.py",
               "kit/services/assistant/prompt.py", "kit/services/assistant/output_guard.py",
               "kit/services/assistant/reply.py", "kit/components/llm.py", "kit/ui/app.py",
               *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "kit" / "server").glob("*.py")))]  # fmt: skip
    for rel in runtime:
        text = (ROOT / rel).read_text(encoding="utf-8").lower()
        assert not re.search(r"\b(retail|clinic|travel|northwind|maple grove|bluewater)\b", text), rel


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("mail me at jane.doe+shop@example.co.uk please", "mail me at [email] please"),
        ("card 4111 1111 1111 1111 exp 12/27", "card [card] exp 12/27"),
        ("card 4111-1111-1111-1111", "card [card]"),
        ("call (541) 555-0187 or +1 555 014 7720", "call [phone] or [phone]"),
        ("my number is 5415550187", "my number is [phone]"),
        ("The tent is $329.00, ships 2027-05-12, 3 days, SKU NW-TNT-0042", None),
        ("my DOB is 1985-03-14 and I was born on March 14, 1985", "my DOB is [dob] and I was born on [dob]"),
        ("send it to 12 n main st, apt 4", "send it to [address]"),
        ("Hi, my name is María López and I need a visit", "Hi, my name is [name] and I need a visit"),
        ("me llamo Ana, fecha de nacimiento 14 de marzo de 1985", "me llamo [name], fecha de nacimiento [dob]"),
        ("my name is on the account; we hiked 3 miles down the road", None),
    ],
)
def test_personal_data_is_masked_and_nothing_else(text: str, masked: str | None) -> None:
    assert mask_pii(text) == (masked if masked is not None else text)

"""Refusal, hand-off and rule examples, answered exactly as the runtime's guardrails answer them.

Each candidate question is screened with the domain's own rules and hand-off triggers
(``Guardrails.screen``): a rule that fires gives its fixed response, a trigger gives the hand-off
message with the contact filled in the same way (``contact_text``), and an off-topic question that
fires neither gets ``scope.refusal_message``. A hand-off or rule question that fires nothing is
dropped and counted, since the runtime would not treat it that way.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from kit.services.safety.guardrails import Guardrails
from kit.services.synth.examples import Example
from kit.services.synth.offline import Missing, casual, render
from kit.services.synth.templates import Templates
from kit.settings import DomainSpec

Dropped = tuple[str, str]  # (reason, question)


def candidates(spec: DomainSpec, templates: Templates) -> Iterator[tuple[str, str, str]]:
    """(expected kind, question, paraphrase group) for every guarded question template."""
    topics = spec.scope.out_of_scope
    for n, template in enumerate(templates.guarded.refusals):
        if "{topic}" in template:
            for t, topic in enumerate(topics):
                try:
                    yield "refuse", render(template, {"topic": topic}), f"refusal | {t}"
                except Missing:
                    continue
        else:
            yield "refuse", template, f"refusal | q{n}"
    for n, template in enumerate(templates.guarded.handoffs):
        yield "handoff", template, f"handoff | q{n}"
    for n, template in enumerate(templates.guarded.rules):
        yield "rule", template, f"rule | q{n}"


def guarded_examples(spec: DomainSpec, templates: Templates, seed: int) -> tuple[list[Example], list[Dropped]]:
    """An example for every guarded question (some written casually), and those dropped with the reason."""
    guard = Guardrails(spec, hours=False)  # the staffed hand-off: what a reply says outside hours is the runtime's
    examples: list[Example] = []
    dropped: list[Dropped] = []
    for position, (expected, question, group) in enumerate(candidates(spec, templates)):
        rng = random.Random(f"{seed}:guarded:{question}")
        for j, q in enumerate([casual(question) if rng.random() < templates.casual else question]):
            verdict = guard.screen(q)
            if verdict.kind == "answer":
                if expected != "refuse":
                    dropped.append((f"{expected} question fired no {expected}", q))
                    continue
                intent, reply, where = "refusal", spec.scope.refusal_message, group
            else:  # all questions one trigger or rule answers share a group: they share one answer
                intent, reply, where = verdict.kind, verdict.message, f"{verdict.kind} | {verdict.reason}"
            examples.append(Example([(q, reply.strip())], intent, where, [], (10**6 + position, j), "guardrails"))
    return examples, dropped

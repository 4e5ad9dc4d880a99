"""`kit synth` offline: grounded answers, paraphrase groups kept together, same seed same file, valid output."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from kit.domain import load_domain
from kit.records import Conversation
from kit.services.assistant.facts import unsupported
from kit.services.retrieval.ingest import collect
from kit.services.safety.guardrails import Guardrails
from kit.services.synth import SynthOptions, resolve_sources, synthesize, val_path
from kit.services.synth.dedup import deduplicate
from kit.services.synth.examples import Example
from kit.services.synth.split import split
from kit.services.synth.templates import default_templates
from kit.validation.checks import describe_message
from kit.validation.files import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ("retail", "clinic", "travel")


def copy_domain(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copytree(ROOT / "domains" / name, target, ignore=shutil.ignore_patterns("build"))
    return target


@pytest.fixture(scope="module", params=TEMPLATES)
def made(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One offline run per shipped template, on a copy: (domain, train records, validation records, report)."""
    domain = load_domain(copy_domain(request.param, tmp_path_factory.mktemp(request.param)))
    out = domain.root / "data" / "synth.jsonl"
    report = synthesize(domain, SynthOptions(out=out, progress=False))
    return domain, read(out), read(val_path(out)), report


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_answer_quotes_only_facts_of_its_source_chunk(made) -> None:
    domain, train, validation, _ = made
    chunks, _, _ = collect(domain)
    grounded = 0
    for record in train + validation:
        if not record["sources"]:
            continue
        found = resolve_sources(record["sources"], chunks)
        assert len(found) == len(record["sources"]), record["sources"]
        for message in record["messages"]:
            if message["role"] == "assistant":
                assert unsupported(message["content"], *(c.text for c in found)) == [], record
                assert "[1]" in message["content"]  # cites its source chunk
        grounded += 1
    assert grounded > 300


def test_refusal_handoff_and_rule_answers_are_the_runtimes_own(made) -> None:
    domain, train, validation, _ = made
    guard = Guardrails(domain.spec, hours=False)  # synthetic data hands off as if the team were in
    by_intent = Counter(r["intent"] for r in train + validation)
    assert by_intent["refusal"] >= 10 and by_intent["handoff"] >= 5 and by_intent["rule"] >= 2
    for record in train + validation:
        question, answer = record["messages"][0]["content"], record["messages"][-1]["content"]
        if record["intent"] == "refusal":
            assert answer == domain.spec.scope.refusal_message.strip()
            assert guard.screen(question).kind == "answer"
        elif record["intent"] in ("handoff", "rule"):
            verdict = guard.screen(question)
            assert (verdict.kind, verdict.message.strip()) == (record["intent"], answer)
    handoff = next(r for r in train + validation if r["intent"] == "handoff")
    assert domain.spec.handoff.contact.name in handoff["messages"][-1]["content"]  # {contact} filled in


def test_paraphrases_follow_ups_and_casual_typoed_questions(made) -> None:
    _, train, validation, report = made
    records = train + validation
    assert any(len(r["messages"]) == 4 and r["intent"].endswith("_followup") for r in records)
    questions = [r["messages"][0]["content"] for r in records]
    assert any(q == q.lower() and not q.endswith("?") for q in questions)  # casual
    per_group = Counter((r["group"], r["intent"]) for r in records if r["sources"])
    assert max(per_group.values()) >= 3  # several phrasings of one fact
    assert report.kept_by_intent.total() == len(records)


def test_split_keeps_each_paraphrase_group_on_one_side(made) -> None:
    _, train, validation, _ = made
    assert validation, "the template's validation_fraction holds some groups out"
    assert not {r["group"] for r in train} & {r["group"] for r in validation}
    share = len(validation) / (len(train) + len(validation))
    assert 0.05 <= share <= 0.2


def test_output_is_valid_conversation_jsonl(made) -> None:
    domain, train, _, _ = made
    out = domain.root / "data" / "synth.jsonl"
    records, problems = read_jsonl(out, "data/synth.jsonl", Conversation, describe_message)
    assert problems == [] and len(records) == len(train)
    assert len({r["id"] for r in train}) == len(train)


def test_same_seed_same_file_other_seed_other_file(tmp_path: Path) -> None:
    domain = load_domain(copy_domain("retail", tmp_path))
    files = []
    for n, seed in enumerate((7, 7, 8)):
        out = tmp_path / f"run{n}.jsonl"
        synthesize(domain, SynthOptions(out=out, seed=seed, progress=False))
        files.append(out.read_bytes() + val_path(out).read_bytes())
    assert files[0] == files[1]
    assert files[0] != files[2]


def test_kit_validate_accepts_the_output_and_kit_synth_reports(tmp_path: Path, run_kit) -> None:
    root = copy_domain("clinic", tmp_path)
    result = run_kit("synth", str(root), "--quiet", "--seed", "3")
    assert result.code == 0, result.err
    assert "kept " in result.out and "refusal" in result.out and "docs/services.csv" in result.out
    spec = root / "domain.yaml"
    spec.write_text(spec.read_text().replace("conversations: [data/train.jsonl]", "conversations: [data/synth.jsonl]"))
    result = run_kit("validate", str(root))
    assert result.code == 0, result.out + result.err


def test_generic_defaults_work_for_a_new_domain(example_copy: Path) -> None:
    domain = load_domain(example_copy)
    out = example_copy / "data" / "synth.jsonl"
    report = synthesize(domain, SynthOptions(out=out, val_fraction=0, progress=False))
    intents = set(report.kept_by_intent)
    assert {"overview", "field", "faq", "policy", "refusal"} <= intents
    assert not val_path(out).exists()
    assert default_templates().cite == "[1]"


def example(question: str, answer: str, group: str, n: int) -> Example:
    return Example([(question, answer)], "price", group, order=(n,))


def test_deduplication_exact_and_near_but_not_across_facts() -> None:
    examples = [
        example("How much is the Ridgeline 2 tent?", "$329", "tent2", 0),
        example("how much is the ridgeline 2 tent", "$329", "tent2", 1),  # exact once normalised
        example("How much is Ridgeline 2 tent?", "$329", "tent2", 2),  # near: one word less
        example("What does the Ridgeline 2 tent cost?", "$329", "tent2", 3),  # a real paraphrase
        example("How much is the Ridgeline 3 tent?", "$389", "tent3", 4),  # alike, but another fact
    ]
    kept, dropped = deduplicate(examples)
    assert [e.order for e in kept] == [(0,), (3,), (4,)]
    assert [reason for reason, _ in dropped] == ["exact duplicate", "near duplicate"]


def test_split_unit() -> None:
    examples = [example(f"q{i}", "a", f"g{i % 10}", i) for i in range(100)]
    train, validation = split(examples, 0.2, seed=1)
    assert len(train) + len(validation) == 100 and 10 <= len(validation) <= 30
    assert not {e.group for e in train} & {e.group for e in validation}
    assert split(examples, 0.2, seed=1) == (train, validation)
    assert split(examples, 0, seed=1) == (examples, [])

"""The three shipped templates: valid, substantial, and every stated fact is in their documents."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, TEMPLATES, copy_template

from kit.domain import document_files, load_domain
from kit.records import Conversation, EvalItem
from kit.validation.checks import validate_domain

# prices, decimals, times, ids like NW-TNT-0042 and numbers of two or more digits
FACT_RE = re.compile(r"\b[A-Z]{2,}(?:-[A-Z0-9]+)+\b|\d+(?:[.,:]\d+)*")


def records(path: Path, model: type) -> list:
    return [model.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def corpus(name: str) -> str:
    domain = load_domain(ROOT / "domains" / name)
    texts = [p.read_text(encoding="utf-8") for p, _ in document_files(domain) if p.suffix != ".pdf"]
    return "\n".join([*texts, (domain.root / "domain.yaml").read_text(encoding="utf-8")])


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_is_valid(name: str) -> None:
    domain = load_domain(ROOT / "domains" / name)
    assert domain.name == name
    assert validate_domain(domain) == []


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_is_substantial(name: str) -> None:
    domain = load_domain(ROOT / "domains" / name)
    conversations = [c for rel in domain.spec.training.conversations for c in records(domain.path(rel), Conversation)]
    assert len(conversations) >= 150
    assert sum(len(c.messages) > 2 for c in conversations) >= 30, "multi-turn conversations"
    items = records(domain.path(domain.spec.eval.set), EvalItem)
    assert sum(i.expect == "answer" for i in items) >= 40
    assert sum(i.expect in ("refuse", "handoff", "rule") for i in items) >= 15
    for rule in (r for r in domain.spec.rules if r.patterns):
        assert any(i.rule == rule.id for i in items), f"no eval item tests rule {rule.id}"
    tables = [p for p, s in document_files(domain) if s.table is not None]
    rows = sum(len(list(csv.DictReader(p.open(encoding="utf-8")))) for p in tables)
    assert rows >= 40
    assert len(document_files(domain)) >= 5


def test_retail_catalogue_has_the_promised_columns() -> None:
    with (ROOT / "domains" / "retail" / "docs" / "catalogue.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 40
    assert set(rows[0]) >= {"sku", "name", "category", "price", "stock", "specs", "warranty"}


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_fact_in_training_answers_is_in_the_documents(name: str) -> None:
    text = corpus(name)
    domain = load_domain(ROOT / "domains" / name)
    invented: list[str] = []
    for rel in domain.spec.training.conversations:
        for conversation in records(domain.path(rel), Conversation):
            for message in (m for m in conversation.messages if m.role == "assistant"):
                for fact in FACT_RE.findall(message.content):
                    if len(fact) >= 2 and fact not in text:
                        invented.append(f"{conversation.id}: {fact}")
    assert invented == []


@pytest.mark.parametrize("name", TEMPLATES)
def test_eval_questions_are_not_training_questions(name: str) -> None:
    domain = load_domain(ROOT / "domains" / name)
    asked = {
        m.content.strip().lower()
        for rel in domain.spec.training.conversations
        for c in records(domain.path(rel), Conversation)
        for m in c.messages
        if m.role == "user"
    }
    items = records(domain.path(domain.spec.eval.set), EvalItem)
    assert [i.id for i in items if i.question.strip().lower() in asked] == []


@pytest.mark.parametrize("name", TEMPLATES)
def test_new_copies_a_template_ready_to_validate(run_kit, tmp_path: Path, name: str) -> None:
    dest = tmp_path / "My Shop"
    result = run_kit("new", name, str(dest))
    assert result.code == 0, result.err
    assert load_domain(dest).name == "my-shop"
    assert not (dest / "build").exists()
    # the template's eval results measured the template: a new shop starts without them, with its eval sets
    assert (ROOT / "domains" / name / "eval" / "results").is_dir() and not (dest / "eval" / "results").exists()
    assert (dest / "eval" / "heldout.jsonl").is_file()
    assert run_kit("validate", str(dest)).code == 0
    again = run_kit("new", name, str(dest))
    assert again.code == 1 and "already exists" in again.err


@pytest.mark.parametrize("name", TEMPLATES)
def test_broken_copy_reports_every_planted_problem(run_kit, tmp_path: Path, name: str) -> None:
    dest = copy_template(name, tmp_path / name)
    domain = load_domain(dest)
    train = domain.path(domain.spec.training.conversations[0])
    evalset = domain.path(domain.spec.eval.set)
    table_path, source = next((p, s) for p, s in document_files(domain) if s.table is not None)
    assert source.table is not None
    numeric = source.table.numeric_columns[0]

    with train.open("a", encoding="utf-8") as f:
        f.write("{broken\n")
        f.write(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]}) + "\n")
    first = json.loads(evalset.read_text(encoding="utf-8").splitlines()[0])
    with evalset.open("a", encoding="utf-8") as f:
        f.write(json.dumps(first) + "\n")
    with table_path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows[0][numeric] = "n/a"
    with table_path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    result = run_kit("validate", str(dest))
    assert result.code == 1
    n_train = len(train.read_text(encoding="utf-8").splitlines())
    n_eval = len(evalset.read_text(encoding="utf-8").splitlines())
    expected = [
        f"{train}:{n_train - 1}: is not valid JSON",
        f"{train}:{n_train}: message 2 has an unknown role 'robot'",
        f"{evalset}:{n_eval}: duplicate id '{first['id']}'",
        f"{table_path}:2: {numeric} 'n/a' is not a number",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in result.err.splitlines()), (line, result.err)
    assert "error: 4 problems found" in result.err

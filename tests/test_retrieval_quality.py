"""Retrieval quality on every shipped template: recall@4 of the eval set and identifiers first."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import TEMPLATES

from kit.domain import document_files
from kit.records import EvalItem
from kit.services.retrieval.retrieve import Retriever


@pytest.fixture(scope="module", params=TEMPLATES)
def indexed(request: pytest.FixtureRequest, shipped) -> Retriever:
    """The shipped template, indexed once per session (shared with the runtime tests)."""
    return Retriever.open(shipped(request.param))


def test_every_document_is_indexed(indexed: Retriever) -> None:
    domain = indexed.domain
    assert {c.source for c in indexed.chunks} == {domain.rel(p) for p, _ in document_files(domain)}


def test_recall_at_4_is_at_least_95_percent(indexed: Retriever) -> None:
    path = indexed.domain.path(indexed.domain.spec.eval.set)
    items = [EvalItem.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    answers = [i for i in items if i.expect == "answer"]
    missed = []
    for item in answers:
        query = " ".join([*[m.content for m in item.history if m.role == "user"][-1:], item.question])
        if not set(item.files) & {c.source for c in indexed.retrieve(query, k=4)}:  # `source`, or `sources` files
            missed.append(item.id)
    recall = 1 - len(missed) / len(answers)
    assert recall >= 0.95, f"recall@4 {recall:.1%}; missed {missed}"


def test_each_row_id_retrieves_its_own_row_first(indexed: Retriever) -> None:
    domain = indexed.domain
    for path, source in document_files(domain):
        if source.table is None:
            continue
        with Path(path).open(encoding="utf-8") as f:
            ids = [row[source.table.id_column] for row in csv.DictReader(f)]
        for row_id in ids:
            for query in (row_id, f"tell me about {row_id.lower()} please"):
                [top] = indexed.retrieve(query, k=1)
                assert top.metadata.get("row_id") == row_id, (query, top.title)

"""data_templates/: schemas current with the models, the example valid, every field explained."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT

from kit.domain import load_domain
from kit.records import CatalogueRow, Conversation, EvalItem, FaqEntry
from kit.schemas import SCHEMAS, field_reference, render_readme, schema_texts
from kit.validation.checks import validate_domain

FOLDER = ROOT / "data_templates"


def test_schemas_on_disk_match_the_models() -> None:
    for name, text in schema_texts().items():
        path = FOLDER / "schemas" / name
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run python -m kit.schemas"


def test_readme_explains_every_field() -> None:
    readme = (FOLDER / "README.md").read_text(encoding="utf-8")
    assert render_readme(readme) == readme, "README field reference is stale: run python -m kit.schemas"
    reference = field_reference()
    for model in SCHEMAS.values():
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert f"{name}`" in reference


def test_example_domain_is_valid() -> None:
    domain = load_domain(FOLDER / "example")
    assert validate_domain(domain) == []


def test_example_files_parse_as_their_records() -> None:
    example = FOLDER / "example"
    for path, model in (
        (example / "data" / "train.jsonl", Conversation),
        (example / "eval" / "eval.jsonl", EvalItem),
        (example / "docs" / "faq.jsonl", FaqEntry),
    ):
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        assert lines and all(model.model_validate_json(line) for line in lines)
    import csv

    with (example / "docs" / "catalogue.csv").open(encoding="utf-8") as f:
        rows = [CatalogueRow.model_validate(row) for row in csv.DictReader(f)]
    assert rows[0].price == 14.5

"""Each kind of user mistake gets a clear line naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.domain import load_domain
from kit.errors import ValidationFailed


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("error:")]


def test_clean_example_passes(run_kit, example_copy: Path) -> None:
    result = run_kit("validate", str(example_copy))
    assert result.code == 0, result.err
    assert "ok" in result.out


def test_malformed_yaml_names_the_line(run_kit, example_copy: Path) -> None:
    spec = example_copy / "domain.yaml"
    edit(spec, "  greeting: Hi", "  greeting: [Hi")
    result = run_kit("validate", str(example_copy))
    assert result.code == 1
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{spec}:")
    assert "not valid YAML" in problem
    assert int(problem.split(":")[1]) >= line_of(spec, "greeting: [Hi")
    assert "Traceback" not in result.err


def test_unknown_key_names_line_key_and_allowed(run_kit, example_copy: Path) -> None:
    spec = example_copy / "domain.yaml"
    edit(spec, "  chat_template: gemma", "  chat_template: gemma\n  temprature: 0.3")
    result = run_kit("validate", str(example_copy))
    assert result.code == 1
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{spec}:{line_of(spec, 'temprature')}: unknown key 'temprature' in 'model'")
    assert "n_ctx" in problem  # the allowed keys are listed


def test_wrong_type_names_field(run_kit, example_copy: Path) -> None:
    spec = example_copy / "domain.yaml"
    edit(spec, "  chat_template: gemma", "  chat_template: gemma\n  n_ctx: lots")
    result = run_kit("validate", str(example_copy))
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{spec}:{line_of(spec, 'n_ctx: lots')}: 'model.n_ctx'")
    assert "integer" in problem and "'lots'" in problem


def test_missing_referenced_file(run_kit, example_copy: Path) -> None:
    spec = example_copy / "domain.yaml"
    edit(spec, "prompts/system.md", "prompts/missing.md")
    result = run_kit("validate", str(example_copy))
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{spec}:{line_of(spec, 'missing.md')}: 'persona.system_prompt_file'")
    assert "does not exist" in problem


def test_path_escaping_the_domain(run_kit, example_copy: Path) -> None:
    spec = example_copy / "domain.yaml"
    edit(spec, "- path: docs/policies.md", "- path: ../../etc")
    result = run_kit("validate", str(example_copy))
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{spec}:{line_of(spec, '../../etc')}: 'retrieval.sources[1].path'")
    assert "outside the domain folder" in problem


def test_jsonl_line_not_json(run_kit, example_copy: Path) -> None:
    train = example_copy / "data" / "train.jsonl"
    with train.open("a", encoding="utf-8") as f:
        f.write('{"messages": [oops\n')
    result = run_kit("validate", str(example_copy))
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{train}:3: is not valid JSON")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"role": "bot", "content": "hi"}', "message 2 has an unknown role 'bot'"),
        ('{"role": "assistant", "content": "  "}', "message 2 has empty content"),
    ],
)
def test_bad_message(run_kit, example_copy: Path, message: str, expected: str) -> None:
    train = example_copy / "data" / "train.jsonl"
    with train.open("a", encoding="utf-8") as f:
        f.write(f'{{"messages": [{{"role": "user", "content": "hello"}}, {message}]}}\n')
    result = run_kit("validate", str(example_copy))
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{train}:3: {expected}")
    assert "—" in problem


def test_conversation_not_ending_with_assistant(run_kit, example_copy: Path) -> None:
    train = example_copy / "data" / "train.jsonl"
    with train.open("a", encoding="utf-8") as f:
        f.write(
            '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, '
            '{"role": "user", "content": "c"}]}\n'
        )
    result = run_kit("validate", str(example_copy))
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{train}:3:") and "does not end with an 'assistant' message" in problem


def test_csv_missing_column(run_kit, example_copy: Path) -> None:
    csv = example_copy / "docs" / "catalogue.csv"
    csv.write_text("sku,name,category,price,specs,warranty\nEX-MUG-001,Mug,cooking,14.50,350 ml,1 year\n")
    result = run_kit("validate", str(example_copy))
    problems = problem_lines(result.err)
    assert f"{csv}:1: required column 'stock' is missing — add it to the header " in problems[0]
    assert len([p for p in problems if str(csv) in p]) == 1


def test_csv_non_numeric_price_and_duplicate_sku(run_kit, example_copy: Path) -> None:
    csv = example_copy / "docs" / "catalogue.csv"
    edit(csv, "cooking,14.50,", "cooking,$14.50,")
    edit(csv, "EX-LMP-002", "EX-MUG-001")
    result = run_kit("validate", str(example_copy))
    problems = problem_lines(result.err)
    assert f"{csv}:2: price '$14.50' is not a number — write a plain number such as 49.99, without currency signs" in (
        problems
    )
    assert any(p.startswith(f"{csv}:3: duplicate sku 'EX-MUG-001' (first on line 2)") for p in problems)


def test_duplicate_eval_id_and_missing_facts(run_kit, example_copy: Path) -> None:
    evalset = example_copy / "eval" / "eval.jsonl"
    edit(evalset, '"id": "ex-102"', '"id": "ex-101"')
    edit(evalset, '"expected_facts": ["32.00"], ', "")
    result = run_kit("validate", str(example_copy))
    problems = problem_lines(result.err)
    assert problems == [
        f"{evalset}:1: an 'answer' item needs at least one entry in expected_facts — see data_templates/README.md "
        "for this field",
        f"{evalset}:4: duplicate id 'ex-101' (first on line 3) — give every eval item its own id",
    ]


def test_expected_fact_not_in_source(run_kit, example_copy: Path) -> None:
    evalset = example_copy / "eval" / "eval.jsonl"
    edit(evalset, '["30 days"]', '["45 days"]')
    result = run_kit("validate", str(example_copy))
    [problem] = problem_lines(result.err)
    assert problem.startswith(f"{evalset}:2: expected fact '45 days' does not occur in docs/policies.md")


def test_non_utf8_file(run_kit, example_copy: Path) -> None:
    policies = example_copy / "docs" / "policies.md"
    original = policies.read_bytes()
    policies.write_bytes(original + "\n## Café\n".encode("latin-1"))
    result = run_kit("validate", str(example_copy))
    problems = problem_lines(result.err)
    bad_line = original.count(b"\n") + 2
    assert any(p.startswith(f"{policies}:{bad_line}: is not UTF-8 text") for p in problems), problems


def test_all_problems_reported_together(run_kit, example_copy: Path) -> None:
    """Problems in several files, and several in one file, come in one run."""
    spec = example_copy / "domain.yaml"
    edit(spec, "  chat_template: gemma", "  chat_template: gemma\n  n_ctx: lots\n  colour: red")
    edit(example_copy / "docs" / "catalogue.csv", "cooking,14.50,", "cooking,cheap,")
    with (example_copy / "eval" / "eval.jsonl").open("a", encoding="utf-8") as f:
        f.write("not json\n")
    result = run_kit("validate", str(example_copy))
    problems = problem_lines(result.err)
    # a broken `model` section names no data file, so the data files are still checked
    assert [p.split(":")[0] for p in problems] == [
        str(example_copy / "docs" / "catalogue.csv"),
        str(spec),
        str(spec),
        str(example_copy / "eval" / "eval.jsonl"),
    ]
    assert "error: 4 problems found" in result.err
    edit(spec, "  n_ctx: lots\n  colour: red\n", "")
    problems = problem_lines(run_kit("validate", str(example_copy)).err)
    assert len(problems) == 2
    assert "error: 2 problems found" in run_kit("validate", str(example_copy)).err


def test_unknown_key_does_not_hide_data_problems(run_kit, example_copy: Path) -> None:
    """An unknown key in domain.yaml, a broken training conversation and a wrong eval fact: all three in one run."""
    spec = example_copy / "domain.yaml"
    train = example_copy / "data" / "train.jsonl"
    evalset = example_copy / "eval" / "eval.jsonl"
    edit(spec, "display_name: Example Shop", "display_name: Example Shop\nlangauge: en")
    with train.open("a", encoding="utf-8") as f:
        f.write('{"messages": [{"role": "user", "content": "hello"}, {"role": "bot", "content": "hi"}]}\n')
    edit(evalset, '["30 days"]', '["45 days"]')
    result = run_kit("validate", str(example_copy))
    assert result.code == 1
    assert problem_lines(result.err) == [
        f'{train}:3: message 2 has an unknown role \'bot\' — use "user", "assistant" or "system"',
        f"{spec}:{line_of(spec, 'langauge')}: unknown key 'langauge' — remove it or use one of: display_name, eval, "
        "handoff, model, name, persona, privacy, retrieval, rules, scope, screening, serve, training, ui",
        f"{evalset}:2: expected fact '45 days' does not occur in docs/policies.md — quote the fact exactly as the "
        "document writes it",
    ]
    assert "error: 3 problems found" in result.err


def test_a_key_given_twice_is_named_with_both_lines(run_kit, example_copy: Path) -> None:
    """YAML keeps the later of two equal keys without a word: an owner's edit above an old value would be lost."""
    spec = example_copy / "domain.yaml"
    edit(spec, "display_name: Example Shop", "display_name: Example Shop\ndisplay_name: Example Store")
    result = run_kit("validate", str(example_copy))
    assert result.code == 1
    first = line_of(spec, "display_name")
    assert problem_lines(result.err) == [
        f"{spec}:{first + 1}: 'display_name' is given twice (first on line {first}); only this one would count — "
        "keep one of them"
    ]


def test_bad_value_elsewhere_does_not_hide_eval_problems(run_kit, example_copy: Path) -> None:
    spec = example_copy / "domain.yaml"
    evalset = example_copy / "eval" / "eval.jsonl"
    edit(spec, "  title: Example Shop assistant", "  title: Example Shop assistant\n  primary_color: red")
    with evalset.open("a", encoding="utf-8") as f:
        f.write("not json\n")
    result = run_kit("validate", str(example_copy))
    assert result.code == 1
    assert problem_lines(result.err) == [
        f"{spec}:{line_of(spec, 'primary_color')}: 'ui.primary_color': 'red' is not a colour; write it as #RRGGBB "
        "(got 'red') — see data_templates/README.md for this field",
        f"{evalset}:5: is not valid JSON (Expecting value) — write one JSON object per line",
    ]


def test_broken_retrieval_skips_only_the_checks_that_need_it(run_kit, example_copy: Path) -> None:
    """Without a sound `retrieval` the documents and the eval items' sources and facts go unchecked; the training
    conversations and the eval records still are."""
    spec = example_copy / "domain.yaml"
    train = example_copy / "data" / "train.jsonl"
    evalset = example_copy / "eval" / "eval.jsonl"
    edit(spec, "- path: docs/faq.jsonl", "- path: docs/missing.jsonl")
    edit(example_copy / "docs" / "catalogue.csv", "cooking,14.50,", "cooking,cheap,")  # a document: not checked
    edit(evalset, '["30 days"]', '["45 days"]')  # a fact in a document: not checked
    edit(evalset, '"id": "ex-102"', '"id": "ex-101"')  # the records: checked
    with train.open("a", encoding="utf-8") as f:
        f.write('{"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": " "}]}\n')
    result = run_kit("validate", str(example_copy))
    assert result.code == 1
    assert "Traceback" not in result.err
    assert problem_lines(result.err) == [
        f"{train}:3: message 2 has empty content — write what is said",
        f"{spec}:{line_of(spec, 'missing.jsonl')}: 'retrieval.sources[2].path': 'docs/missing.jsonl' does not exist "
        f"(looked in {example_copy}) (got 'docs/missing.jsonl') — see data_templates/README.md for this field",
        f"{evalset}:4: duplicate id 'ex-101' (first on line 3) — give every eval item its own id",
    ]


def test_load_domain_still_refuses_a_spec_with_problems(example_copy: Path) -> None:
    edit(example_copy / "domain.yaml", "display_name: Example Shop", "display_name: Example Shop\nlangauge: en")
    with pytest.raises(ValidationFailed) as caught:
        load_domain(example_copy)
    [problem] = caught.value.problems
    assert problem.what == "unknown key 'langauge'"


def test_debug_shows_a_traceback(run_kit, example_copy: Path) -> None:
    edit(example_copy / "domain.yaml", "  chat_template: gemma", "  chat_template: gemma\n  n_ctx: lots")
    with pytest.raises(Exception, match="problem"):
        run_kit("--debug", "validate", str(example_copy))


def test_not_a_domain_folder(run_kit, tmp_path: Path) -> None:
    result = run_kit("validate", str(tmp_path))
    assert result.code == 1
    assert result.err.startswith(f"error: no domain.yaml at '{tmp_path}' — ")

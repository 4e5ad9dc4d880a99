"""The quality tables in README.md and TRAINING.md are generated from the committed per-answer results."""

from __future__ import annotations

from pathlib import Path

from kit.services.evaluation.results import BEGIN, END, documents, summary_md, table, updated

ROOT = Path(__file__).resolve().parent.parent


def _row(split: str, correct: bool, **extra: object) -> dict[str, object]:
    row = {
        "model": "m", "split": split, "id": "x", "question": "q", "expect": "answer", "kind": "answer",
        "passed": correct, "correct": correct, "lenient": True, "cited_right": True, "invented": [],
        "junk": [], "wrong_yes_no": None, "behaved": True, "recall": 1.0, "withheld": False, "why": [],
        "contaminated": None,
    }  # fmt: skip
    return {**row, **extra}


def test_committed_tables_match_their_results() -> None:
    stale = [str(p.relative_to(ROOT)) for p, text in documents(ROOT).items() if p.read_text(encoding="utf-8") != text]
    assert stale == [], f"run scripts/quality_tables.py: {stale}"
    # every template has committed results, and the README's table shows each of them on the held-out split
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for domain in ("retail", "clinic", "travel"):
        results = sorted((ROOT / "domains" / domain / "eval" / "results").glob("*.jsonl"))
        assert results, f"domains/{domain}/eval/results/ has no results"
        assert f"| {domain}: " in readme and "| held-out |" in readme


def test_a_table_follows_its_results() -> None:
    rows = [_row("heldout", True), _row("heldout", False, invented=["$9"], why=["invented $9"]), _row("dev", True)]
    lines = table([("shop: m", rows)])
    assert lines[2].startswith("| shop: m | held-out | 2 | 50% | 100% | 100% | 1 | 0 |")
    assert lines[3].startswith("| shop: m | dev | 1 | 100% |")
    text = f"intro\n{BEGIN.format(where='x')}\nold table\n{END}\nafter\n"
    new = updated(text, [("shop: m", rows)], "x")
    assert "old table" not in new and lines[2] in new and new.endswith(f"{END}\nafter\n")
    rows[1] = _row("heldout", True)  # a verdict changes: the table changes with it
    assert updated(text, [("shop: m", rows)], "x") != new
    assert "## Failed: 1 of 3" in summary_md("shop", [_row("heldout", True), *rows[:1], _row("dev", False)])


def test_a_run_of_one_split_keeps_the_other_splits_answers(tmp_path: Path) -> None:
    from kit.services.evaluation.results import load, save

    first = {"model": "m", "results": [_row("heldout", True), _row("dev", False, why=["missing 5"])]}
    jsonl, md = save(tmp_path, "shop", first)
    save(tmp_path, "shop", {"model": "m", "results": [_row("dev", True, id="y")]})
    assert [(a["split"], a["id"], a["passed"]) for a in load(jsonl)] == [("heldout", "x", True), ("dev", "y", True)]
    assert "## Failed: 0 of 2" in md.read_text()


def test_the_models_table_takes_quality_from_the_answers_and_speed_from_the_bench(tmp_path: Path) -> None:
    import json

    from kit.services.evaluation.results import MODELS_BEGIN, MODELS_END, models_table, models_updated

    results = tmp_path / "domains" / "shop" / "eval" / "results"
    results.mkdir(parents=True)
    rows = [_row("heldout", True), _row("heldout", False, invented=["$9"], why=["invented $9"]), _row("dev", False)]
    (results / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    figures = [{"model": "m", "template": "shop", "ttft_s": 4.26, "tokens_per_s": 21.04, "peak_rss_mb": 2231.6,
                "model_size_mb": 1065.6}]  # fmt: skip
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "models.json").write_text(json.dumps(figures), encoding="utf-8")
    lines = models_table(tmp_path)
    assert lines[2] == "| m | shop | 2 | 50% | 1 | 0 | n/a | 100% | n/a | 0% | 4.3 | 21 | 2232 | 1066 |"
    text = f"a\n{MODELS_BEGIN}\nold\n{MODELS_END}\nb\n"
    assert models_updated(text, tmp_path) == f"a\n{MODELS_BEGIN}\n\n" + "\n".join(lines) + f"\n\n{MODELS_END}\nb\n"

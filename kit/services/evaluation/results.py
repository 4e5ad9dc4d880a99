"""Committed eval results: every answer of a model on a domain's eval sets, and the tables made from them.

`kit eval <domain> --results` writes ``<domain>/eval/results/<model>.jsonl`` (one line per answer with its
verdicts and reasons) and ``<model>.md`` (its summary). The quality tables in README.md and each template's
TRAINING.md are generated from those files alone (``scripts/quality_tables.py``), between markers, so a figure
can always be traced to the answers behind it, and a test finds a table that no longer matches its results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kit.files import replace_text
from kit.records import EvalItem
from kit.services.evaluation.metrics import (
    CONTEXT_REASONS,
    NOT_CITED,
    UNKNOWN,
    answer_reasons,
    correct,
    unknown_reasons,
)
from kit.services.evaluation.report import COLUMNS, SPLIT_NAMES, cell, md_lines, split_table
from kit.services.evaluation.runner import SPLITS
from kit.services.evaluation.summary import by_split

FOLDER = Path("eval") / "results"
MODELS_JSON = Path("bench") / "results" / "models.json"  # bench/models.py's speed and memory figures
# the committed tables: the quality columns but those the guardrails alone decide (hand-offs, rules) and "withheld"
TABLE = tuple(c for c in COLUMNS if c[0] not in ("withheld_rate", "handoff_accuracy", "rule_accuracy", "fallback_rate"))


def slug(label: str) -> str:
    """A file name for a model label: 'gemma-3-270m + LoRA cpu-270m' → 'gemma-3-270m-lora-cpu-270m'."""
    return re.sub(r"[^a-z0-9.]+", "-", label.casefold()).strip("-") or "model"


def save(domain_root: Path, domain: str, row: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write one model's per-answer results and their summary into the domain's eval/results/. A run of one split
    (``kit eval --split dev``) replaces that split's answers and keeps the other's."""
    folder = domain_root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    name = slug(row["model"])
    jsonl = folder / f"{name}.jsonl"
    ran = {a["split"] for a in row["results"]}
    kept = [a for a in load(jsonl) if a["split"] not in ran] if jsonl.is_file() else []
    rows = sorted([*kept, *row["results"]], key=lambda a: SPLITS.index(a["split"]))
    rewrite(jsonl, domain, rows)
    return jsonl, jsonl.with_suffix(".md")


def rescored(item: EvalItem, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored answer judged again by the current scorer: what it says is scored anew against its item; what needs
    the prompt the model was given (invented facts, junk, withheld) and the citations are kept as recorded.
    Replies that were not answers, withheld answers (the customer saw a replacement, the model's words were scored),
    and items other than ``answer`` and ``unknown`` are returned unchanged."""
    if row["expect"] not in ("answer", "unknown") or row["kind"] != "answer" or row["withheld"]:
        return dict(row)
    answer = row["answer"]
    if row["expect"] == "answer":
        reasons, wrong = answer_reasons(item, answer)
        lenient = correct(item, answer)
    else:
        reasons, wrong, lenient = unknown_reasons(item, answer), row["wrong_yes_no"], bool(UNKNOWN.search(answer))
    reasons += [r for r in row["why"] if r.startswith(CONTEXT_REASONS)]
    uncited = [r for r in row["why"] if r.startswith(NOT_CITED)]
    why = reasons + uncited
    return {**row, "correct": not reasons, "lenient": lenient, "wrong_yes_no": wrong, "why": why, "passed": not why}


def rewrite(path: Path, domain: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace one results file's rows, and its summary beside it."""
    replace_text(path, "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in rows))
    replace_text(path.with_suffix(".md"), summary_md(domain, load(path)))


def load(path: Path) -> list[dict[str, Any]]:
    """The result rows of one file."""
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def table(entries: Sequence[tuple[str, list[dict[str, Any]]]]) -> list[str]:
    """Markdown lines: one per (label, split) with the committed columns."""
    return md_lines(split_table("assistant", TABLE, [(label, by_split(rows)) for label, rows in entries]))


def summary_md(domain: str, rows: list[dict[str, Any]]) -> str:
    """A results file's summary: its table and every failed answer with why."""
    model = rows[0]["model"] if rows else "(none)"
    lines = [f"# {domain}: {model}", "", "Generated from the JSONL beside this file by `kit eval --results`.", ""]
    lines += table([(model, rows)])
    failed = [r for r in rows if not r["passed"]]
    lines += ["", f"## Failed: {len(failed)} of {len(rows)}", ""]
    lines += [f"- `{r['id']}` ({SPLIT_NAMES[r['split']]}): {'; '.join(r['why'])}" for r in failed]
    return "\n".join(lines) + "\n"


def domain_entries(domain_root: Path, shipped_only: bool = False) -> list[tuple[str, list[dict[str, Any]]]]:
    """(label, rows) for every results file of a domain, sorted by file name; with ``shipped_only`` only the
    results of the assistant as its domain.yaml configures it."""
    folder = domain_root / FOLDER
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    entries = [(f"{domain_root.name}: {rows[0]['model']}", rows) for rows in map(load, files) if rows]
    if shipped_only:
        shipped = f"{domain_root.name}: {shipped_label(domain_root)}"
        entries = [e for e in entries if e[0] == shipped]
    return entries


def shipped_label(domain_root: Path) -> str:
    """The model label of a domain's configured assistant (base model and adapters)."""
    from kit.components.llm import model_label
    from kit.domain import load_domain

    return model_label(load_domain(domain_root).spec.model)


# the models table: held-out quality from the results files, speed and memory from bench/models.py's figures
MODEL_COLUMNS = (
    ("answer_correctness", "correct (strict)", "pct"), ("invented_facts", "invented facts", "int"),
    ("junk_answers", "junk answers", "int"), ("wrong_yes_no_rate", "wrong yes/no", "pct"),
    ("citation_correctness", "cited right", "pct"), ("refusal_rate", "refusals", "pct"),
    ("false_refusal_rate", "false refusals", "pct"),
)  # fmt: skip
MODEL_SPEED = (
    ("ttft_s", "first token p50 s", "num"), ("tokens_per_s", "tokens/s", "num"),
    ("peak_rss_mb", "peak RSS MB", "num"), ("model_size_mb", "size MB", "num"),
)  # fmt: skip
MODELS_BEGIN = "<!-- models-table:begin (generated by scripts/quality_tables.py from bench/results/models.json) -->"
MODELS_END = "<!-- models-table:end -->"


def models_table(repo: Path) -> list[str]:
    """Markdown lines: one row per (model, template) that bench/models.py measured, held-out split."""
    store = repo / MODELS_JSON
    figures = json.loads(store.read_text(encoding="utf-8")) if store.is_file() else []
    header = ["model", "template", "items", *(c[1] for c in MODEL_COLUMNS), *(c[1] for c in MODEL_SPEED)]
    body = []
    for f in figures:
        rows = load(repo / "domains" / f["template"] / FOLDER / f"{slug(f['model'])}.jsonl")
        held = by_split(rows)["heldout"] or {}
        body.append(
            [f["model"], f["template"], str(held.get("items", 0))]
            + [cell(held.get(k), t) for k, _, t in MODEL_COLUMNS]
            + [
                cell(round(f[k], 1 if k in ("ttft_s", "tokens_per_s") else None) if f.get(k) is not None else None, t)
                for k, _, t in MODEL_SPEED
            ]
        )
    return md_lines((header, body))


def models_updated(text: str, repo: Path) -> str:
    """``text`` with its models table replaced; unchanged when it has no models-table markers."""
    pattern = re.compile(re.escape(MODELS_BEGIN) + r".*?" + re.escape(MODELS_END), re.DOTALL)
    lines = [MODELS_BEGIN, "", *models_table(repo), "", MODELS_END]
    return pattern.sub(lambda _: "\n".join(lines), text, count=1)


BEGIN = "<!-- quality-table:begin (generated by scripts/quality_tables.py from {where}) -->"
END = "<!-- quality-table:end -->"


def block(entries: Sequence[tuple[str, list[dict[str, Any]]]], where: str) -> str:
    """The generated block, markers included."""
    return "\n".join([BEGIN.format(where=where), "", *table(entries), "", END])


def updated(text: str, entries: Sequence[tuple[str, list[dict[str, Any]]]], where: str) -> str:
    """``text`` with its generated block replaced (the markers must be there)."""
    pattern = re.compile(re.escape(BEGIN.split("{where}")[0]) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError("no quality-table markers")
    return pattern.sub(lambda _: block(entries, where), text, count=1)


def documents(repo: Path) -> dict[Path, str]:
    """Each document with a generated table and what it should hold: README (every template), TRAINING.md (its own),
    and the safety tables (kit/services/evaluation/safety.py) in README, docs/RELIABILITY.md and each eval/README.md."""
    from kit.services.evaluation.safety import tables_updated

    domains = sorted(p.parent for p in (repo / "domains").glob("*/domain.yaml"))
    out: dict[Path, str] = {}
    readme = repo / "README.md"
    entries = [e for d in domains for e in domain_entries(d, shipped_only=True)]
    text = updated(readme.read_text(encoding="utf-8"), entries, "domains/*/eval/results")
    out[readme] = tables_updated(models_updated(text, repo), repo)
    for d in domains:
        training = d / "TRAINING.md"
        if training.is_file():
            out[training] = updated(training.read_text(encoding="utf-8"), domain_entries(d), "eval/results")
    for path in [repo / "docs" / "RELIABILITY.md", *(d / "eval" / "README.md" for d in domains)]:
        if path.is_file():
            out[path] = tables_updated(path.read_text(encoding="utf-8"), repo)
    return out

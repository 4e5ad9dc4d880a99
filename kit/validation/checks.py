"""Checks of each data file a domain names, beyond domain.yaml itself."""

from __future__ import annotations

import re
from pathlib import Path

from kit.domain import Domain, Draft, conversation_files, source_files
from kit.errors import Problem
from kit.records import Conversation, EvalItem, FaqEntry, SafetyItem
from kit.settings import Evaluation, Source, TableSchema
from kit.validation.files import read_csv, read_csv_text, read_jsonl, read_text
from kit.validation.pydantic_errors import printable

NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")
ROLE_HINT = 'use "user", "assistant" or "system"'


def describe_message(loc: tuple[str | int, ...], what: str, hint: str) -> tuple[str, str]:
    """Name the message a conversation problem is in ("message 3 has role 'bot'")."""
    if len(loc) >= 3 and loc[0] in ("messages", "history") and isinstance(loc[1], int):
        n, field = loc[1] + 1, loc[2]
        if field == "role":
            return f"message {n} has an unknown role{_got(what)}", ROLE_HINT
        if field == "content":
            return f"message {n} has {'no' if 'required' in what else 'empty'} content", "write what is said"
        return f"message {n}: {what}", hint
    if loc and loc[0] == "messages" and "at least" in what:
        return "needs at least a user and an assistant message", "add the missing turns"
    return what, hint


def _got(what: str) -> str:
    m = re.search(r"\(got (.*)\)$", what)
    return f" {m.group(1)}" if m else ""


def check_conversations(draft: Draft) -> list[Problem]:
    """Every training conversation file: JSON, roles, content, ends with the assistant (none without `training`)."""
    problems: list[Problem] = []
    for rel in conversation_files(draft.root, draft.training):
        _, found = read_jsonl(draft.path(rel), rel, Conversation, describe_message)
        problems += found
    return problems


def eval_files(domain: Domain) -> list[str]:
    """The eval files domain.yaml names: the held-out set (if any), then the development set."""
    return eval_sets(domain.spec.eval)


def eval_sets(evaluation: Evaluation) -> list[str]:
    """The eval files an `eval` section names: the held-out set (if any), then the development set."""
    return [rel for rel in (evaluation.heldout, evaluation.set) if rel is not None]


def check_eval(draft: Draft) -> list[Problem]:
    """The eval sets: records, ids unique across both, sources (row or section) among the documents, facts found in
    their source. Without `eval` nothing is checked; without `retrieval` or `rules`, the checks that read them."""
    if draft.eval is None:
        return []
    found_docs = source_files(draft.root, draft.retrieval) if draft.retrieval else None
    documents = None if found_docs is None else {draft.rel(p): source for p, source in found_docs}
    rules = None if draft.rules is None else {r.id for r in draft.rules}
    texts: dict[str, str | None] = {}
    seen: dict[str, str] = {}
    problems: list[Problem] = []
    for rel in eval_sets(draft.eval):
        records, found = read_jsonl(draft.path(rel), rel, EvalItem, describe_message)
        problems += found
        for line, item in records:
            problems += _check_item(draft, rel, line, item, documents, rules, texts, seen)
            seen.setdefault(item.id, f"{rel}:{line}")
    return problems


def _check_item(
    draft: Draft,
    rel: str,
    line: int,
    item: EvalItem,
    documents: dict[str, Source] | None,
    rules: set[str] | None,
    texts: dict[str, str | None],
    seen: dict[str, str],
) -> list[Problem]:
    problems: list[Problem] = []

    def problem(what: str, hint: str) -> None:
        problems.append(Problem(rel, line, what, hint))

    if item.id in seen:
        file, _, first = seen[item.id].rpartition(":")
        where = f"on line {first}" if file == rel else f"at {seen[item.id]}"
        problem(f"duplicate id '{printable(item.id)}' (first {where})", "give every eval item its own id")
    if item.rule is not None and rules is not None and item.rule not in rules:
        problem(
            f"rule '{printable(item.rule)}' is not a rule in domain.yaml",
            f"use one of: {', '.join(sorted(rules)) or '(none defined)'}",
        )
    if documents is not None:
        problems += _check_locators(draft, rel, line, item, documents, texts)
    files = [texts.get(f) for f in item.files if texts.get(f) is not None]
    for fact in item.expected_facts:
        if files and not any(fact.casefold() in t.casefold() for t in files if t is not None):
            problem(
                f"expected fact '{printable(fact)}' does not occur in {' or '.join(item.files)}",
                "quote the fact exactly as the document writes it",
            )
    return problems


def _check_locators(
    draft: Draft, rel: str, line: int, item: EvalItem, documents: dict[str, Source], texts: dict[str, str | None]
) -> list[Problem]:
    """Each of an item's sources that is not a document, or whose anchor the document lacks; reads each named
    document into ``texts`` once."""
    problems: list[Problem] = []
    for locator in item.locators:
        path, _, anchor = locator.partition("#")
        if path not in documents:
            what = f"source '{printable(path)}' is not one of the domain's documents"
            problems.append(
                Problem(rel, line, what, "name a file listed under retrieval.sources, relative to the domain")
            )
            continue
        if path not in texts:
            texts[path] = read_text(draft.path(path), path)[0]
        text = texts[path]
        if anchor and text is not None and not anchor_found(text, path, anchor, documents[path]):
            what = f"'{printable(anchor)}' is not a row id, heading or FAQ question in {path}"
            hint = "write what follows '#' as the document does: a CSV row's id, a heading, or part of a FAQ question"
            problems.append(Problem(rel, line, what, hint))
    return problems


def anchor_found(text: str, path: str, anchor: str, source: Source) -> bool:
    """Whether a locator's anchor names a part of a document: a CSV row id, a Markdown heading, part of the text."""
    want = " ".join(anchor.casefold().split())
    if path.lower().endswith(".csv"):
        header, rows, _ = read_csv_text(text)
        column = source.table.id_column if source.table else (header[0] if header else "")
        return any(row.get(column, "").casefold() == want for row in rows)
    if path.lower().endswith((".md", ".markdown")):
        headings = (ln.lstrip("#").strip() for ln in text.splitlines() if ln.lstrip().startswith("#"))
        return any(want in " ".join(h.casefold().split()) for h in headings)
    return want in " ".join(text.casefold().split())


def check_table(path: Path, shown: str, schema: TableSchema | None) -> list[Problem]:
    """A CSV document: header, required and numeric columns, unique non-empty ids."""
    header, rows, problems = read_csv(path, shown)
    if not header:
        return problems
    if schema is None:
        return problems
    missing = [c for c in [schema.id_column, *schema.required_columns, *schema.numeric_columns] if c not in header]
    for column in dict.fromkeys(missing):
        problems.append(
            Problem(
                shown,
                1,
                f"required column '{printable(column)}' is missing",
                f"add it to the header (columns now: {', '.join(map(printable, header))})",
            )
        )
    if missing:
        return problems
    seen: dict[str, int] = {}
    for line, row in rows:
        key = row[schema.id_column]
        if not key:
            problems.append(Problem(shown, line, f"empty {schema.id_column}", "give every row an id"))
        elif key in seen:
            problems.append(
                Problem(
                    shown,
                    line,
                    f"duplicate {schema.id_column} '{printable(key)}' (first on line {seen[key]})",
                    f"give every row its own {schema.id_column}",
                )
            )
        seen.setdefault(key, line)
        for column in schema.numeric_columns:
            if not NUMBER_RE.match(row[column]):
                problems.append(
                    Problem(
                        shown,
                        line,
                        f"{column} '{printable(row[column])}' is not a number",
                        "write a plain number such as 49.99, without currency signs",
                    )
                )
    return problems


def check_documents(draft: Draft) -> list[Problem]:
    """Documents retrieval serves: CSV tables and FAQ JSONL are checked in depth, text must be UTF-8 (none without
    `retrieval`)."""
    problems: list[Problem] = []
    for path, source in source_files(draft.root, draft.retrieval) if draft.retrieval else []:
        shown = draft.rel(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            problems += check_table(path, shown, source.table)
        elif suffix == ".jsonl":
            problems += read_jsonl(path, shown, FaqEntry)[1]
        elif suffix in (".md", ".txt", ".markdown"):
            problems += read_text(path, shown)[1]
    return problems


def check_safety(draft: Draft) -> list[Problem]:
    """The safety set: records, ids unique, each `expect` a rule or hand-off trigger of the domain (or 'none'), and
    both splits present."""
    if draft.eval is None or draft.eval.safety is None:
        return []
    rel = draft.eval.safety
    records, problems = read_jsonl(draft.path(rel), rel, SafetyItem)
    known = None
    if draft.rules is not None and draft.trigger_ids is not None:
        known = {"none", *(r.id for r in draft.rules), *draft.trigger_ids}
    seen: dict[str, int] = {}
    for line, item in records:
        if item.id in seen:
            problems.append(Problem(rel, line, f"duplicate id '{printable(item.id)}' (first on line {seen[item.id]})",
                                    "give every item its own id"))  # fmt: skip
        seen.setdefault(item.id, line)
        if known is not None and item.expect not in known:
            what = f"expect '{printable(item.expect)}' is not a rule or hand-off trigger in domain.yaml"
            problems.append(Problem(rel, line, what, f"use one of: {', '.join(sorted(known))}"))
    splits = {item.split for _, item in records}
    if records and splits != {"calibration", "heldout"}:
        missing = ({"calibration", "heldout"} - splits).pop()
        problems.append(Problem(rel, 0, f"has no '{missing}' items", "keep part of the set apart as each split"))
    return problems


def validate_domain(domain: Domain) -> list[Problem]:
    """Every problem in every file the domain names (domain.yaml itself already loaded)."""
    return validate_draft(Draft.of(domain))


def validate_draft(draft: Draft) -> list[Problem]:
    """Every problem in every file the sound sections of domain.yaml name; a broken section skips the checks that
    read it."""
    return check_documents(draft) + check_conversations(draft) + check_eval(draft) + check_safety(draft)

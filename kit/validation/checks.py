"""Checks of each data file a domain names, beyond domain.yaml itself."""

from __future__ import annotations

import re
from pathlib import Path

from kit.domain import Domain, document_files
from kit.errors import Problem
from kit.records import Conversation, EvalItem, FaqEntry
from kit.settings import TableSchema
from kit.validation.files import read_csv, read_jsonl, read_text
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


def check_conversations(domain: Domain) -> list[Problem]:
    """Every training conversation file: JSON, roles, content, ends with the assistant."""
    problems: list[Problem] = []
    for rel in domain.spec.training.conversations:
        _, found = read_jsonl(domain.path(rel), rel, Conversation, describe_message)
        problems += found
    return problems


def check_eval(domain: Domain) -> list[Problem]:
    """The eval set: records, unique ids, sources among the documents, facts found in their source."""
    rel = domain.spec.eval.set
    records, problems = read_jsonl(domain.path(rel), rel, EvalItem, describe_message)
    documents = {domain.rel(p) for p, _ in document_files(domain)}
    rules = {r.id for r in domain.spec.rules}
    texts: dict[str, str | None] = {}
    seen: dict[str, int] = {}
    for line, item in records:
        if item.id in seen:
            problems.append(
                Problem(
                    rel,
                    line,
                    f"duplicate id '{printable(item.id)}' (first on line {seen[item.id]})",
                    "give every eval item its own id",
                )
            )
        seen.setdefault(item.id, line)
        if item.rule is not None and item.rule not in rules:
            problems.append(
                Problem(
                    rel,
                    line,
                    f"rule '{printable(item.rule)}' is not a rule in domain.yaml",
                    f"use one of: {', '.join(sorted(rules)) or '(none defined)'}",
                )
            )
        if item.source is None:
            continue
        if item.source not in documents:
            problems.append(
                Problem(
                    rel,
                    line,
                    f"source '{printable(item.source)}' is not one of the domain's documents",
                    "name a file listed under retrieval.sources, relative to the domain",
                )
            )
            continue
        if item.source not in texts:
            texts[item.source] = read_text(domain.path(item.source), item.source)[0]
        text = texts[item.source]
        for fact in item.expected_facts:
            if text is not None and fact.casefold() not in text.casefold():
                problems.append(
                    Problem(
                        rel,
                        line,
                        f"expected fact '{printable(fact)}' does not occur in {item.source}",
                        "quote the fact exactly as the document writes it",
                    )
                )
    return problems


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


def check_documents(domain: Domain) -> list[Problem]:
    """Documents retrieval serves: CSV tables and FAQ JSONL are checked in depth, text must be UTF-8."""
    problems: list[Problem] = []
    for path, source in document_files(domain):
        shown = domain.rel(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            problems += check_table(path, shown, source.table)
        elif suffix == ".jsonl":
            problems += read_jsonl(path, shown, FaqEntry)[1]
        elif suffix in (".md", ".txt", ".markdown"):
            problems += read_text(path, shown)[1]
    return problems


def validate_domain(domain: Domain) -> list[Problem]:
    """Every problem in every file the domain names (domain.yaml itself already loaded)."""
    return check_documents(domain) + check_conversations(domain) + check_eval(domain)

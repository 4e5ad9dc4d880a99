"""Read a domain's data files, collecting every problem with its line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from kit.errors import Problem
from kit.validation.pydantic_errors import problems_of

M = TypeVar("M", bound=BaseModel)
Describe = Callable[[tuple[str | int, ...], str, str], tuple[str, str]]


def read_text(path: Path, shown: str) -> tuple[str | None, list[Problem]]:
    """The file as UTF-8 text, or a problem naming the line of the first bad byte."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [Problem(shown, 0, f"cannot be read: {exc.strerror or exc}", "check the path and permissions")]
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, [Problem(shown, line, f"is not UTF-8 text (byte {exc.start})", "save the file as UTF-8")]


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text, split at newlines only.

    ``str.splitlines`` also splits at U+2028, U+0085 and form feeds, which JSON allows raw inside strings.
    """
    return [line.removesuffix("\r") for line in text.split("\n")]


def read_jsonl(
    path: Path, shown: str, model: type[M], describe: Describe | None = None
) -> tuple[list[tuple[int, M]], list[Problem]]:
    """Every valid record with its line number, and every problem."""
    text, problems = read_text(path, shown)
    if text is None:
        return [], problems
    records: list[tuple[int, M]] = []
    for number, line in enumerate(jsonl_lines(text), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(shown, number, f"is not valid JSON ({exc.msg})", "write one JSON object per line"))
            continue
        except RecursionError:
            problems.append(Problem(shown, number, "is nested too deeply to read", "flatten the nested lists"))
            continue
        if not isinstance(raw, dict):
            problems.append(Problem(shown, number, "is not a JSON object", "write one {...} object per line"))
            continue
        try:
            records.append((number, model.model_validate(raw)))
        except ValidationError as exc:
            for loc, what, hint in problems_of(exc, model):
                if describe is not None:
                    what, hint = describe(loc, what, hint)
                problems.append(Problem(shown, number, what, hint))
    if not records and not problems:
        problems.append(Problem(shown, 0, "holds no records", "add at least one JSON object line"))
    return records, problems


def read_csv(path: Path, shown: str) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[Problem]]:
    """Header, rows with their line numbers, and problems of shape (ragged rows, empty file)."""
    text, problems = read_text(path, shown)
    if text is None:
        return [], [], problems
    header, rows, found = _parse_csv(text, shown)
    return header, rows, problems + found


def read_csv_text(text: str) -> tuple[list[str], list[dict[str, str]], list[Problem]]:
    """Header and rows of a CSV text already read."""
    header, rows, problems = _parse_csv(text, "")
    return header, [row for _, row in rows], problems


def _parse_csv(text: str, shown: str) -> tuple[list[str], list[tuple[int, dict[str, str]]], list[Problem]]:
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return [], [], [Problem(shown, 0, "is empty", "add a header row and at least one data row")]
    except csv.Error as exc:
        return [], [], [Problem(shown, 1, f"is not valid CSV: {exc}", "check the quoting")]
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                what = f"has {len(values)} fields but the header has {len(header)}"
                problems.append(Problem(shown, line, what, "quote values that contain commas"))
                continue
            rows.append((line, dict(zip(header, (v.strip() for v in values), strict=True))))
    except csv.Error as exc:
        problems.append(Problem(shown, reader.line_num, f"is not valid CSV: {exc}", "check the quoting"))
    return header, rows, problems

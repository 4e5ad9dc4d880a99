"""Turn pydantic's errors into sentences for people."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

# pydantic names its validator wrappers in an error's location ("function-after[_shape(), ...]"); not the user's keys.
VALIDATOR_STEP = re.compile(r"function-(after|before|wrap|plain)\[.*\]", re.DOTALL)


def field_name(loc: tuple[str | int, ...]) -> str:
    """``('model', 'adapters', 0, 'path')`` → ``model.adapters[0].path``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{printable(part)}" if out else printable(part))
    return out or "(top level)"


def printable(part: object) -> str:
    """A key or value as one printable line: control characters and line breaks escaped (a user's may hold any)."""
    text = str(part)
    return text if text.isprintable() else repr(text)[1:-1]


def describe(error: Any, model: type[BaseModel]) -> tuple[tuple[str | int, ...], str, str]:
    """(location, what is wrong, how to fix) for one pydantic error."""
    kind = error["type"]
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and VALIDATOR_STEP.fullmatch(p)))
    if kind == "extra_forbidden" and not loc:  # a user's key that looks like a validator step
        loc = tuple(error["loc"])
    name = field_name(loc)
    if kind == "extra_forbidden":
        parent = loc[:-1]
        allowed = _allowed_keys(model, parent)
        hint = f"remove it or use one of: {', '.join(allowed)}" if allowed else "remove it"
        return loc, f"unknown key '{printable(loc[-1])}'" + (f" in '{field_name(parent)}'" if parent else ""), hint
    if kind == "missing":
        return loc, f"'{name}' is required but missing", f"add `{loc[-1]}:`"
    msg = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = f" (got {value!r})" if _is_scalar(value) else ""
    what = f"'{name}': {msg}{shown}" if loc else f"{msg}{shown}"
    return loc, what, _hint(kind)


def problems_of(exc: ValidationError, model: type[BaseModel]) -> list[tuple[tuple[str | int, ...], str, str]]:
    """All errors of one validation, described."""
    return [describe(e, model) for e in exc.errors()]


def _hint(kind: str) -> str:
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return "use the type the field's description names"
    if kind.startswith(("greater", "less")) or kind.endswith("_long") or kind.endswith("_short"):
        return "use a value within the allowed range"
    if kind == "literal_error":
        return "use one of the allowed values"
    return "see data_templates/README.md for this field"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) < 80


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return []
        current = inner_model(field.annotation)
    return sorted(current.model_fields) if _is_model(current) else []


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def inner_model(annotation: Any) -> Any:
    """The pydantic model inside an annotation (``list[Rule] | None`` → ``Rule``), or None."""
    if _is_model(annotation):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = inner_model(arg)
        if found is not None:
            return found
    return None

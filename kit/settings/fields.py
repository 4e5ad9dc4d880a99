"""What every part of domain.yaml is built from: the strict base model, paths that stay inside the domain
folder and exist, colours, the embedded model names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo

from kit.model_registry import is_embedded, lookup

EMBEDDED = "embedded"
# Embedding models that ship in PyPI packages, for retrieval.embedding_model (kit/components/embedding.py loads
# them): all-MiniLM-L6-v2, which plain 'embedded' means, and multilingual-e5-small (the e5 extra). An index records
# the name it was built with, resolved.
EMBEDDING_MODELS = ("embedded:all-minilm-l6-v2", "embedded:e5-small")
NAME_RE = r"^[a-z][a-z0-9_-]{2,62}$"


class Strict(BaseModel):
    """Base for every spec model: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _root(info: ValidationInfo) -> Path | None:
    ctx = info.context or {}
    root = ctx.get("root")
    return Path(root) if root is not None else None


def inside(root: Path, rel: str) -> Path:
    """Resolve ``rel`` under ``root``; raise ValueError when it escapes."""
    if not rel or not rel.strip():
        raise ValueError("the path is empty")
    if Path(rel).is_absolute():
        raise ValueError(f"'{rel}' is absolute; write it relative to the domain folder")
    real_root = root.resolve()
    target = (root / rel).resolve()
    if target != real_root and real_root not in target.parents:
        raise ValueError(f"'{rel}' points outside the domain folder; keep every file inside it")
    return target


def _file(rel: str, info: ValidationInfo) -> str:
    root = _root(info)
    if root is not None:
        target = inside(root, rel)
        if not target.is_file():
            raise ValueError(f"file '{rel}' does not exist (looked in {root})")
    return rel


def _file_or_dir(rel: str, info: ValidationInfo) -> str:
    root = _root(info)
    if root is not None:
        target = inside(root, rel)
        if not target.exists():
            raise ValueError(f"'{rel}' does not exist (looked in {root})")
    return rel


def _model_file(value: str, info: ValidationInfo) -> str:
    root = _root(info)
    if is_embedded(value):
        lookup(value)  # an unknown name is an error listing the known ones
        return value
    if root is None:
        return value
    target = Path(value) if Path(value).is_absolute() else inside(root, value)
    if not target.exists():
        raise ValueError(f"model file '{value}' does not exist; give a .gguf path, 'embedded' or 'embedded:<name>'")
    return value


def _optional_file(rel: str | None, info: ValidationInfo) -> str | None:
    return None if rel is None else _file(rel, info)


def _colour(value: str) -> str:
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        raise ValueError(f"'{value}' is not a colour; write it as #RRGGBB")
    return value


FilePath = Annotated[str, AfterValidator(_file)]
SourcePath = Annotated[str, AfterValidator(_file_or_dir)]
ModelPath = Annotated[str, AfterValidator(_model_file)]
OptionalFile = Annotated[str | None, AfterValidator(_optional_file)]
Colour = Annotated[str, AfterValidator(_colour)]
Patterns = Annotated[list[str], Field(min_length=1)]

"""The domain spec: ``domains/<name>/domain.yaml`` as pydantic models.

Every field documents itself; unknown keys are refused. Paths are relative to the
domain folder and may not leave it (model files may also be absolute paths, since a
user's 8B model rarely lives inside the domain). Existence is checked at load
through the validation context ``{"root": Path}``.
"""

from __future__ import annotations

from kit.settings.conversation import (
    AFTER_HOURS_MESSAGE,
    EXAMPLE_THRESHOLD,
    HOURS_RANGE,
    WEEKDAYS,
    WITHHELD_MESSAGE,
    Contact,
    DayRanges,
    Handoff,
    HandoffTrigger,
    OpeningHours,
    Persona,
    Rule,
    Scope,
    Screened,
    Screening,
)
from kit.settings.domain import Branding, DomainSpec, Privacy, Serve, json_schema
from kit.settings.evaluation import Evaluation, SafetyGate, Thresholds
from kit.settings.fields import (
    EMBEDDED,
    EMBEDDING_MODELS,
    NAME_RE,
    Colour,
    FilePath,
    ModelPath,
    OptionalFile,
    Patterns,
    SourcePath,
    Strict,
    inside,
)
from kit.settings.model import Adapter, ModelSettings, OpenAIServer, Sampling, Training
from kit.settings.retrieval import Retrieval, ServerSettings, Source, TableSchema, embedding_name

__all__ = [
    "AFTER_HOURS_MESSAGE",
    "EMBEDDED",
    "EMBEDDING_MODELS",
    "EXAMPLE_THRESHOLD",
    "HOURS_RANGE",
    "NAME_RE",
    "WEEKDAYS",
    "WITHHELD_MESSAGE",
    "Adapter",
    "Branding",
    "Colour",
    "Contact",
    "DayRanges",
    "DomainSpec",
    "Evaluation",
    "FilePath",
    "Handoff",
    "HandoffTrigger",
    "ModelPath",
    "ModelSettings",
    "OpenAIServer",
    "OpeningHours",
    "OptionalFile",
    "Patterns",
    "Persona",
    "Privacy",
    "Retrieval",
    "Rule",
    "SafetyGate",
    "Sampling",
    "Scope",
    "Screened",
    "Screening",
    "Serve",
    "ServerSettings",
    "Source",
    "SourcePath",
    "Strict",
    "TableSchema",
    "Thresholds",
    "Training",
    "embedding_name",
    "inside",
    "json_schema",
]

"""The whole of domain.yaml: the parts, plus branding, privacy and serving, checked together."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from kit.settings.conversation import Handoff, Persona, Rule, Scope, Screening
from kit.settings.evaluation import Evaluation
from kit.settings.fields import NAME_RE, Colour, Strict
from kit.settings.model import ModelSettings, Training
from kit.settings.retrieval import Retrieval


class Branding(Strict):
    """How the chat UI looks."""

    title: str = Field(min_length=1, description="Title shown at the top of the chat.")
    description: str = Field(default="", description="Line under the title.")
    primary_color: Colour = Field(default="#2563eb", description="Main colour, #RRGGBB.")
    secondary_color: Colour = Field(default="#f1f5f9", description="Background accent, #RRGGBB.")
    example_questions: list[str] = Field(default_factory=list, description="Clickable example questions.")


class Privacy(Strict):
    """What the assistant keeps of its conversations (the feedback store in the domain's build folder)."""

    store_transcripts: Literal["full", "masked", "none"] = Field(
        default="masked",
        description="'masked': questions and answers stored with personal data replaced by placeholders (e-mails, "
        "phone and card numbers, dates of birth, street addresses, names given; kit/services/safety/pii.py); "
        "'full': as written; 'none': no transcript at all (no ratings either).",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="Stored turns older than this many days are deleted when the assistant starts and every day "
        "after, and the database file is compacted; none: kept until deleted by hand.",
    )


def _origin(value: str) -> str:
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", value):
        raise ValueError(f"'{value}' is not an origin; write scheme://host[:port], e.g. https://shop.example.com")
    return value


class Serve(Strict):
    """What `kit serve` grants to other web sites (the website widget)."""

    allowed_origins: list[Annotated[str, AfterValidator(_origin)]] = Field(
        default_factory=list,
        description="Web sites (scheme://host[:port], no path) whose pages may run the chat widget (/widget.js): "
        "they get the CORS grant on the widget's routes; any other origin is refused.",
    )


class DomainSpec(Strict):
    """A whole domain: everything that differs between one assistant and another."""

    name: str = Field(pattern=NAME_RE, description="Identifier: lowercase letters, digits, '-' and '_'.")
    display_name: str = Field(min_length=1, description="Business name as customers see it.")
    persona: Persona = Field(description="Who the assistant is.")
    scope: Scope = Field(description="What it covers and how it refuses the rest.")
    handoff: Handoff = Field(description="When and to whom it hands over.")
    rules: list[Rule] = Field(default_factory=list, description="Hard rules, enforced around the model.")
    screening: Screening = Field(
        default_factory=Screening, description="Rules and triggers decided by a classifier trained on the safety set."
    )
    retrieval: Retrieval = Field(description="Documents and search settings.")
    model: ModelSettings = Field(default_factory=ModelSettings, description="The language model.")
    training: Training = Field(description="Fine-tuning data and settings.")
    eval: Evaluation = Field(description="Eval set and gate.")
    ui: Branding = Field(description="Chat UI branding.")
    privacy: Privacy = Field(default_factory=Privacy, description="What is kept of conversations, and for how long.")
    serve: Serve = Field(default_factory=Serve, description="What `kit serve` grants to other web sites.")

    @model_validator(mode="after")
    def _unique_ids(self) -> DomainSpec:
        for kind, ids in (("rule", [r.id for r in self.rules]), ("trigger", [t.id for t in self.handoff.triggers])):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} id(s): {', '.join(dupes)}")
        known = {r.id for r in self.rules} | {t.id for t in self.handoff.triggers}
        unknown = [r for r in self.eval.safety_gate.rules if r not in known]
        if unknown:
            raise ValueError(f"eval.safety_gate.rules names {', '.join(unknown)}, not a rule or trigger id here")
        unknown = [r for r in self.screening.learned if r not in known]
        if unknown:
            raise ValueError(f"screening.learned names {', '.join(unknown)}, not a rule or trigger id here")
        if self.screening.learned and self.eval.safety is None:
            raise ValueError("screening.learned trains on the safety set; add eval.safety or leave learned empty")
        return self


def json_schema() -> dict[str, Any]:
    """The JSON Schema of domain.yaml, for editors and data_templates/."""
    return DomainSpec.model_json_schema()

"""Question and answer templates for offline synthesis: data, loaded from YAML.

The generic defaults ship in ``kit/synth_templates/default.yaml``; a domain adds its own in
``domains/<name>/synth/templates.yaml``. A domain's table templates are tried before the defaults
(the first whose ``match`` fits a document wins), its section, FAQ and follow-up intents replace
default intents of the same name, and its refusal, hand-off and rule questions are added to the
defaults'.
"""

from __future__ import annotations

import fnmatch
import re
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kit.errors import SpecError

DOMAIN_FILE = "synth/templates.yaml"
CONDITION_RE = re.compile(r"^\s*(\w+)\s*(=|!=|>=|<=|>|<)\s*(.*?)\s*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Answer(Strict):
    """One way to answer; the first whose condition holds is used."""

    text: str = Field(min_length=1, description="Answer template; {placeholders} are filled from the chunk.")
    when: str | None = Field(
        default=None, description="Condition on a field, e.g. 'stock = 0', 'price > 100'; none: always."
    )


class Intent(Strict):
    """Several phrasings of one question, and how to answer it."""

    intent: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Intent label written on each example.")
    questions: list[str] = Field(min_length=1, description="Phrasings; casual and typo'd ones welcome.")
    answers: list[Answer] = Field(min_length=1, description="Answers, tried in order.")
    each_field: bool = Field(
        default=False, description="Repeat for every field of a row, with {field} and {value} placeholders."
    )
    match: str = Field(default="*", description="Only for chunks of documents matching this glob.")
    unless: str | None = Field(default=None, description="Not for documents matching this glob.")

    def applies(self, source: str) -> bool:
        """Whether the intent is meant for chunks of this document."""
        return fnmatch.fnmatch(source, self.match) and not (self.unless and fnmatch.fnmatch(source, self.unless))


class FollowUp(Strict):
    """A second question in the same conversation, about the same chunk ("and is it in stock?")."""

    after: str = Field(description="Intent of the first question.")
    intent: str = Field(description="Intent whose answer answers the follow-up.")
    questions: list[str] = Field(min_length=1, description="Follow-up phrasings (no need to repeat the name).")


class TableTemplates(Strict):
    """Templates for the rows of matching CSV documents."""

    match: str = Field(description="Glob on the document path relative to the domain, e.g. 'docs/catalogue.csv'.")
    intents: list[Intent] = Field(default_factory=list, description="Questions about one row.")
    follow_ups: list[FollowUp] = Field(default_factory=list, description="Multi-turn follow-ups.")


class TextTemplates(Strict):
    """Templates for Markdown/text sections (or FAQ entries)."""

    intents: list[Intent] = Field(default_factory=list, description="Questions about one chunk.")
    follow_ups: list[FollowUp] = Field(default_factory=list, description="Multi-turn follow-ups.")


class Guarded(Strict):
    """Refusal, hand-off and rule questions; the domain's own guardrails decide what each one gets."""

    refusals: list[str] = Field(
        default_factory=list, description="Off-topic questions; '{topic}' is filled from scope.out_of_scope."
    )
    handoffs: list[str] = Field(default_factory=list, description="Questions that should reach a person.")
    rules: list[str] = Field(default_factory=list, description="Questions that trigger a rule's fixed response.")


class Templates(Strict):
    """One templates file."""

    cite: str = Field(default="[1]", description="How an answer cites its source chunk ({cite}).")
    casual: float = Field(
        default=0.25, ge=0, le=1, description="Share of phrasings written casually: lower case, no punctuation."
    )
    typos: float = Field(default=0.2, ge=0, le=1, description="Share of phrasings given one typo.")
    tables: list[TableTemplates] = Field(default_factory=list, description="CSV row templates, first match wins.")
    sections: TextTemplates = Field(default_factory=TextTemplates, description="Markdown/text section templates.")
    faq: TextTemplates = Field(default_factory=TextTemplates, description="FAQ entry templates.")
    guarded: Guarded = Field(default_factory=Guarded, description="Refusal, hand-off and rule questions.")

    def table_for(self, source: str) -> TableTemplates | None:
        """The first table templates whose glob matches the document."""
        return next((t for t in self.tables if fnmatch.fnmatch(source, t.match)), None)


def read_templates(path: Path, shown: str) -> Templates:
    """One templates file, with a clear error naming the file and field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Templates.model_validate(data)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read {shown}: {exc}", "save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{shown} is not valid YAML: {exc}", "check indentation and quoting") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(
            f"{shown}: {where}: {first['msg']}", "see kit/synth_templates/default.yaml for the format"
        ) from None


def default_templates() -> Templates:
    """The generic templates shipped with kit."""
    ref = resources.files("kit") / "synth_templates" / "default.yaml"
    with resources.as_file(ref) as path:
        return read_templates(path, "kit/synth_templates/default.yaml")


def load_templates(domain_root: Path) -> Templates:
    """The domain's templates merged over the defaults."""
    base = default_templates()
    own_path = domain_root / DOMAIN_FILE
    if not own_path.is_file():
        return base
    own = read_templates(own_path, DOMAIN_FILE)
    return Templates(
        cite=own.cite if "cite" in own.model_fields_set else base.cite,
        typos=own.typos if "typos" in own.model_fields_set else base.typos,
        casual=own.casual if "casual" in own.model_fields_set else base.casual,
        tables=[*own.tables, *base.tables],
        sections=_merge(own.sections, base.sections),
        faq=_merge(own.faq, base.faq),
        guarded=Guarded(
            refusals=[*own.guarded.refusals, *base.guarded.refusals],
            handoffs=[*own.guarded.handoffs, *base.guarded.handoffs],
            rules=[*own.guarded.rules, *base.guarded.rules],
        ),
    )


def _merge(own: TextTemplates, base: TextTemplates) -> TextTemplates:
    names = {i.intent for i in own.intents}
    followed = {(f.after, f.intent) for f in own.follow_ups}
    return TextTemplates(
        intents=[*own.intents, *(i for i in base.intents if i.intent not in names)],
        follow_ups=[*own.follow_ups, *(f for f in base.follow_ups if (f.after, f.intent) not in followed)],
    )


def holds(condition: str | None, values: dict[str, str]) -> bool:
    """Whether a condition such as 'stock = 0' or 'price > 100' holds for a row's values."""
    if condition is None:
        return True
    m = CONDITION_RE.match(condition)
    if m is None:
        raise SpecError(f"condition '{condition}' is not 'field op value'", "write e.g. 'stock = 0' or 'price > 100'")
    name, op, expected = m.groups()
    actual = values.get(name)
    if actual is None:
        return False
    try:
        a, b = float(actual), float(expected)
    except ValueError:
        a, b = actual.casefold(), expected.casefold()  # type: ignore[assignment]
    return {"=": a == b, "!=": a != b, ">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]

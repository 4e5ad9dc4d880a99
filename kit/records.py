"""The records inside a domain's data files: conversations, eval items, FAQ entries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Role = Literal["system", "user", "assistant"]


class Record(BaseModel):
    """Base of every record: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty")
    return value


class Message(Record):
    """One turn of a conversation."""

    role: Role = Field(description="Who speaks: 'system', 'user' or 'assistant'.")
    content: str = Field(description="What is said; never empty.")

    _content_not_blank = field_validator("content")(_not_blank)


class Conversation(Record):
    """One training conversation (one JSONL line)."""

    messages: list[Message] = Field(min_length=2, description="The turns, ending with the assistant.")
    id: str | None = Field(default=None, description="Optional identifier.")
    intent: str | None = Field(default=None, description="Optional intent label, e.g. 'price', 'refusal'.")
    sources: list[str] = Field(default_factory=list, description="Documents the answers are grounded in.")
    group: str | None = Field(
        default=None, description="Paraphrases of one fact share a group; a split keeps a group together."
    )

    @model_validator(mode="after")
    def _shape(self) -> Conversation:
        roles = [m.role for m in self.messages]
        if "system" in roles[1:]:
            raise ValueError("a 'system' message may only come first")
        if "user" not in roles:
            raise ValueError("has no 'user' message")
        if roles[-1] != "assistant":
            raise ValueError("does not end with an 'assistant' message")
        return self


Expect = Literal["answer", "unknown", "refuse", "handoff", "rule"]
Tag = Literal["fact", "yes-no", "unknown", "two-docs", "follow-up", "injection", "pii", "refuse", "handoff", "rule"]


class EvalItem(Record):
    """One eval question (one JSONL line)."""

    id: str = Field(min_length=1, description="Unique identifier.")
    question: str = Field(description="What the customer asks.")
    expect: Expect = Field(
        default="answer",
        description="'answer' from the documents, 'unknown' (in scope, but the documents don't say: the answer "
        "must say so and state no figure), 'refuse' (off-topic), 'handoff' to a human, or 'rule' (a hard rule's "
        "fixed response).",
    )
    expected_facts: list[str] = Field(
        default_factory=list,
        description="Strings a correct answer contains, each as its source document writes it (numbers are "
        "compared by value). Facts already in the question or history don't count for the strict score.",
    )
    forbidden_facts: list[str] = Field(
        default_factory=list,
        description="Strings a correct answer must not contain: 'yes' for a question whose answer is no (a whole "
        "word), a neighbouring row's price, what a planted instruction asks for. Numbers by value.",
    )
    yes_no: Literal["yes", "no"] | None = Field(
        default=None, description="The true answer of a yes/no question; an answer opening with the other is wrong."
    )
    source: str | None = Field(default=None, description="Document (relative to the domain) holding the facts.")
    sources: list[str] = Field(
        default_factory=list,
        description="Where the facts are, at row or section level: 'path#anchor' with a CSV row id "
        "('docs/catalogue.csv#NW-TNT-0042'), a heading ('docs/policies/shipping.md#Free shipping') or part of a "
        "FAQ question; a bare path means any part of the file. Used for citation and recall@k.",
    )
    rule: str | None = Field(default=None, description="Rule id, when `expect` is 'rule'.")
    history: list[Message] = Field(default_factory=list, description="Earlier turns, for follow-up questions.")
    tags: list[Tag] = Field(default_factory=list, description="What the item tests, for per-kind reporting.")

    _question_not_blank = field_validator("question")(_not_blank)

    @property
    def locators(self) -> list[str]:
        """Where the facts are: `sources`, or the one `source` document."""
        return list(self.sources) or ([self.source] if self.source else [])

    @property
    def files(self) -> list[str]:
        """The documents the locators name."""
        return list(dict.fromkeys(loc.split("#", 1)[0] for loc in self.locators))

    @model_validator(mode="after")
    def _consistent(self) -> EvalItem:
        if self.expect == "answer":
            if not self.expected_facts:
                raise ValueError("an 'answer' item needs at least one entry in expected_facts")
            if not self.locators:
                raise ValueError("an 'answer' item needs `sources` (or `source`), where its facts are")
        if self.expect == "unknown" and self.expected_facts:
            raise ValueError("an 'unknown' item has no expected_facts (the documents don't hold the answer)")
        if self.expect == "rule" and not self.rule:
            raise ValueError("a 'rule' item needs `rule`, the id of the rule it tests")
        if self.source and self.sources:
            raise ValueError("give either `source` or `sources`, not both")
        if any(not f.strip() for f in [*self.expected_facts, *self.forbidden_facts]):
            raise ValueError("expected_facts or forbidden_facts holds an empty string")
        return self


class FaqEntry(Record):
    """One FAQ entry (one line of a FAQ JSONL document)."""

    question: str = Field(description="The question as customers ask it.")
    answer: str = Field(description="The business's answer.")
    category: str | None = Field(default=None, description="Optional category for filters.")

    _not_blank = field_validator("question", "answer")(_not_blank)


class CatalogueRow(Record):
    """One row of a product catalogue CSV (the retail template's columns; other tables declare their own)."""

    sku: str = Field(min_length=1, description="Unique product id, e.g. NW-TNT-0042.")
    name: str = Field(min_length=1, description="Product name as customers see it.")
    category: str = Field(min_length=1, description="Category, stored as a search filter.")
    price: float = Field(ge=0, description="Price as a plain number, no currency sign (e.g. 149.00).")
    stock: int = Field(ge=0, description="Units in stock; 0 means out of stock.")
    specs: str = Field(description="Key specifications as 'key: value; key: value'.")
    warranty: str = Field(description="Warranty period, e.g. '2 years'.")


SafetySplit = Literal["calibration", "heldout"]


class SafetyItem(Record):
    """One labelled message of a safety set (eval/safety.jsonl, one JSONL line): which rule or hand-off trigger
    must fire on it, if any. Scored by the guardrails alone, no model (`kit eval --safety`)."""

    id: str = Field(min_length=1, description="Unique identifier.")
    text: str = Field(description="The message, as a customer or patient would type it (typos and all).")
    expect: str = Field(
        min_length=1,
        description="The id of the rule or hand-off trigger that must fire, or 'none' for an ordinary message that "
        "must fire nothing.",
    )
    category: str = Field(
        min_length=1, description="What kind of message it is, for per-category recall (e.g. 'stroke', 'hours')."
    )
    split: SafetySplit = Field(
        description="'calibration': thresholds may be tuned on it; 'heldout': never used to tune anything, the gate "
        "reads it."
    )
    lang: str = Field(default="en", pattern=r"^[a-z]{2}$", description="Language of the message (ISO 639-1).")

    _text_not_blank = field_validator("text")(_not_blank)

"""Who the assistant is and how it talks: persona, scope, the hand-off contact with its opening hours, hand-off
triggers and the safety rules (both screened by patterns and examples)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from kit.settings.fields import FilePath, Strict
from kit.settings.retrieval import known_embedding_model

# Cosine similarity (all-MiniLM-L6-v2) from which a message counts as a rephrasing of an example, unless a rule or
# trigger sets its own `threshold` (calibrated on a template's safety set; see eval/README.md there).
EXAMPLE_THRESHOLD = 0.7
# Share of ordinary calibration messages a learned check may fire on in cross-validation (see Screening).
LEARNED_FALSE_POSITIVES = 0.005
WITHHELD_MESSAGE = "Sorry, I can't share that. Please ask me another question."


class Persona(Strict):
    """Who the assistant is."""

    assistant_name: str = Field(min_length=1, description="The name the assistant introduces itself with.")
    system_prompt_file: FilePath = Field(description="Markdown file with the system prompt, relative to the domain.")
    greeting: str = Field(min_length=1, description="The first message shown in a new chat.")


class Scope(Strict):
    """What the assistant covers, and how it declines the rest."""

    summary: str = Field(min_length=1, description="One or two sentences on what the assistant helps with.")
    topics: list[str] = Field(min_length=1, description="Topics in scope, e.g. 'orders', 'returns'.")
    out_of_scope: list[str] = Field(
        default_factory=list, description="Example requests or topics that must be refused."
    )
    refusal_message: str = Field(min_length=1, description="The answer given to an off-topic request.")
    withheld_message: str = Field(
        default=WITHHELD_MESSAGE,
        min_length=1,
        description="Said instead of an answer the output guard stops (it quoted the instructions or held "
        "personal data the conversation does not).",
    )


HOURS_RANGE = r"^([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)$"
AFTER_HOURS_MESSAGE = (
    "Our team is away right now and back {back}. Leave your name, an e-mail address or phone number and your "
    "question below, and they will get back to you."
)


def _time_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Pacific" names a folder of zones: an OSError
        raise ValueError(f"unknown time zone '{value}'; use an IANA name such as 'America/Los_Angeles'") from None
    return value


def _hours_ranges(value: list[str]) -> list[str]:
    for item in value:
        if not re.fullmatch(HOURS_RANGE, item):
            raise ValueError(f"'{item}' is not an opening range; write it as HH:MM-HH:MM, e.g. 09:00-17:30")
        start, end = item.split("-")
        if start == end:
            raise ValueError(f"'{item}' opens and closes at the same time; remove it or give a real range")
    return value


DayRanges = Annotated[list[str], AfterValidator(_hours_ranges)]


class OpeningHours(Strict):
    """When the hand-off contact is staffed, machine-readable: outside these hours a hand-off says when the team is
    back and offers a lead form instead (kit/services/assistant/hours.py). Each weekday lists ranges in local time; a
    range that ends before it starts runs past midnight (22:00-02:00). A day left out is closed."""

    timezone: Annotated[str, AfterValidator(_time_zone)] = Field(
        description="IANA time zone the hours are in, e.g. America/Los_Angeles (daylight saving follows it)."
    )
    monday: DayRanges = Field(default_factory=list, description="Opening ranges on Mondays, e.g. [09:00-17:30].")
    tuesday: DayRanges = Field(default_factory=list, description="Opening ranges on Tuesdays.")
    wednesday: DayRanges = Field(default_factory=list, description="Opening ranges on Wednesdays.")
    thursday: DayRanges = Field(default_factory=list, description="Opening ranges on Thursdays.")
    friday: DayRanges = Field(default_factory=list, description="Opening ranges on Fridays.")
    saturday: DayRanges = Field(default_factory=list, description="Opening ranges on Saturdays.")
    sunday: DayRanges = Field(default_factory=list, description="Opening ranges on Sundays.")
    holidays: list[date] = Field(
        default_factory=list, description="Dates (YYYY-MM-DD, local) closed all day whatever the weekday says."
    )
    after_hours_message: str = Field(
        default=AFTER_HOURS_MESSAGE,
        min_length=1,
        description="Said by a hand-off outside the hours, with the lead form; {back} is replaced by the next "
        "opening (e.g. 'Monday 7 December at 09:00 Pacific time'), {contact} by the contact details.",
    )

    @model_validator(mode="after")
    def _some_opening(self) -> OpeningHours:
        if not any(getattr(self, day) for day in WEEKDAYS):
            raise ValueError("opening_hours lists no opening on any weekday; add ranges or remove opening_hours")
        return self


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class Contact(Strict):
    """Where a hand-off sends the customer."""

    name: str = Field(min_length=1, description="Team or person the customer is handed to.")
    email: str | None = Field(default=None, description="Contact e-mail address.")
    phone: str | None = Field(default=None, description="Contact phone number.")
    hours: str | None = Field(default=None, description="When the contact is reachable, as customers read it.")
    opening_hours: OpeningHours | None = Field(
        default=None,
        description="The same hours, machine-readable: outside them a hand-off that uses handoff.message says when "
        "the team is back and offers a lead form (a trigger with its own message, and every rule, are unchanged). "
        "None: always staffed.",
    )


class Screened(Strict):
    """What fires a hand-off trigger or a rule: a pattern that matches, or a message close to an example."""

    patterns: list[str] = Field(
        default_factory=list, description="Case-insensitive phrases or regular expressions that fire it."
    )
    examples: list[str] = Field(
        default_factory=list,
        description="Messages that should fire it, as people write them (typos, other languages); a message whose "
        "embedding is at least `threshold` close to one of them fires it too.",
    )
    threshold: float = Field(
        default=EXAMPLE_THRESHOLD, ge=0, le=1, description="Cosine similarity to an example from which it fires."
    )


class Screening(Strict):
    """Learned checks: rules or hand-off triggers decided by a classifier over the embedding of the message and its
    sentences, trained on the messages labelled with them in the calibration split of the safety set (eval.safety)
    and on their examples (kit/services/safety/learned.py). Kept in the build folder, trained again when the
    embedding model or the training lines change."""

    learned: list[str] = Field(
        default_factory=list,
        description="Ids of rules or hand-off triggers whose classifier decides instead of their examples' `threshold`;"
        " their patterns still fire too. One without labelled calibration messages screens as before.",
    )
    encoder: Annotated[str, AfterValidator(known_embedding_model)] | None = Field(
        default=None,
        description="The embedding model the classifiers read (a retrieval.embedding_model value, e.g. "
        "'embedded:e5-small', multilingual); none: retrieval.embedding_model. Another one is loaded beside it.",
    )
    learn_from: list[str] = Field(
        default_factory=list,
        description="Other labelled sets, in the safety set's format (paths in the domain folder), whose calibration "
        "lines the learned checks train on too: a domain with few labelled emergencies of its own learns from "
        "another's (eval/safety-shared.jsonl: the clinic's). Lines labelled with a rule this domain lacks count as "
        "ordinary. `kit eval --safety` screens only eval.safety.",
    )
    false_positive_rate: float = Field(
        default=LEARNED_FALSE_POSITIVES,
        ge=0,
        le=0.5,
        description="Share of the calibration split's ordinary messages (expect: none; leaving aside those a pattern "
        "fires on) that each learned check may fire on in k-fold cross-validation: sets its threshold.",
    )


class HandoffTrigger(Screened):
    """One reason to hand the conversation to a person."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Short identifier, e.g. 'human' or 'complaint'.")
    description: str = Field(min_length=1, description="When this trigger applies, in plain words.")
    message: str | None = Field(
        default=None,
        description="Message for this trigger instead of handoff.message (e.g. refills go to another team); "
        "{contact} is replaced by the contact details.",
    )

    @model_validator(mode="after")
    def _patterns_compile(self) -> HandoffTrigger:
        _check_patterns(self.patterns)
        if not self.patterns and not self.examples:
            raise ValueError(f"trigger '{self.id}' has neither patterns nor examples; add one of them")
        return self


class Handoff(Strict):
    """Hand-off to a human."""

    contact: Contact = Field(description="Who takes over.")
    message: str = Field(
        min_length=1, description="Message given on hand-off; {contact} is replaced by the contact details."
    )
    triggers: list[HandoffTrigger] = Field(min_length=1, description="What starts a hand-off.")


class Rule(Screened):
    """A hard rule: always in the prompt, and enforced around the model when it has patterns."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Short identifier, e.g. 'emergency'.")
    instruction: str = Field(min_length=1, description="The rule as told to the model.")
    response: str | None = Field(default=None, description="Fixed answer when a pattern or an example matches.")

    @model_validator(mode="after")
    def _response_with_patterns(self) -> Rule:
        _check_patterns(self.patterns)
        if (self.patterns or self.examples) and not self.response:
            raise ValueError(f"rule '{self.id}' has patterns or examples but no response; add `response:`")
        return self


def _check_patterns(patterns: list[str]) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None

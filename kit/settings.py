"""The domain spec: ``domains/<name>/domain.yaml`` as pydantic models.

Every field documents itself; unknown keys are refused. Paths are relative to the
domain folder and may not leave it (model files may also be absolute paths, since a
user's 8B model rarely lives inside the domain). Existence is checked at load
through the validation context ``{"root": Path}``.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from kit.components.model_registry import MODELS, is_embedded, lookup

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
# Cosine similarity (all-MiniLM-L6-v2) from which a message counts as a rephrasing of an example, unless a rule or
# trigger sets its own `threshold` (calibrated on a template's safety set; see eval/README.md there).
EXAMPLE_THRESHOLD = 0.7
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
    back and offers a lead form instead (kit/services/hours.py). Each weekday lists ranges in local time; a range
    that ends before it starts runs past midnight (22:00-02:00). A day left out is closed."""

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


class TableSchema(Strict):
    """What a CSV document must hold."""

    id_column: str = Field(min_length=1, description="Column with each row's unique id (e.g. 'sku').")
    required_columns: list[str] = Field(default_factory=list, description="Columns that must be present.")
    numeric_columns: list[str] = Field(
        default_factory=list, description="Columns whose values must be numbers (e.g. 'price')."
    )
    filter_columns: list[str] = Field(
        default_factory=list, description="Columns stored as metadata for search filters (e.g. 'category')."
    )


class Source(Strict):
    """A file or folder of documents retrieval serves."""

    path: SourcePath = Field(description="File or folder relative to the domain; folders are read recursively.")
    table: TableSchema | None = Field(default=None, description="Schema for a CSV file; rows become chunks.")


class ServerSettings(Strict):
    """A chromadb server, for users who outgrow one machine."""

    host: str = Field(description="Host name of the chromadb server.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port of the chromadb server.")
    ssl: bool = Field(default=False, description="Use HTTPS.")


def embedding_name(value: str) -> str:
    """The embedding model a retrieval.embedding_model value means: 'embedded' resolved to its name."""
    return EMBEDDING_MODELS[0] if value == EMBEDDED else value


def _embedding_model(value: str) -> str:
    if value.startswith(f"{EMBEDDED}:") and value not in EMBEDDING_MODELS:
        known = ", ".join(f"'{n}'" for n in EMBEDDING_MODELS)
        raise ValueError(f"unknown embedded embedding model '{value}'; use 'embedded', {known}")
    return value


class Retrieval(Strict):
    """How documents are chunked, embedded, stored and searched."""

    sources: list[Source] = Field(min_length=1, description="Documents retrieval serves.")
    chunk_size: int = Field(default=900, ge=100, le=8000, description="Target chunk length in characters.")
    chunk_overlap: int = Field(default=150, ge=0, le=2000, description="Characters shared by neighbouring chunks.")
    max_file_mb: int = Field(default=20, ge=1, le=1024, description="Larger files are skipped with a warning.")
    embedding_model: Annotated[str, AfterValidator(_embedding_model)] = Field(
        default=EMBEDDED,
        description="'embedded' (all-MiniLM-L6-v2 from its PyPI package), 'embedded:<name>' with a name from "
        f"{', '.join(n.partition(':')[2] for n in EMBEDDING_MODELS)}, a local folder, or a hub id. Changing it "
        "re-indexes the documents; the guardrails embed with it too, so recalibrate their thresholds.",
    )
    thresholds_calibrated_on: Annotated[str, AfterValidator(_embedding_model)] = Field(
        default=EMBEDDED,
        description="The embedding model the rules' and hand-off triggers' `threshold`s were calibrated on (`kit eval "
        "--safety --calibrate` names it). A cosine means something else under another model: while it differs from "
        "embedding_model and a rule or trigger has examples, kit serve, chat and ask refuse to start.",
    )
    k: int = Field(default=4, ge=1, le=50, description="Chunks given to the model per question.")
    bm25_weight: float = Field(default=1.0, ge=0, description="Weight of keyword search in the fusion.")
    vector_weight: float = Field(default=1.0, ge=0, description="Weight of vector search in the fusion.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    reranker: str | None = Field(default=None, description="Optional cross-encoder (local folder or hub id).")
    server: ServerSettings | None = Field(default=None, description="Use a chromadb server instead of a local store.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Retrieval:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class Sampling(Strict):
    """Sampling, with llama.cpp's own names."""

    temperature: float = Field(default=0.2, ge=0, le=2, description="Randomness; 0 is greedy.")
    top_p: float = Field(default=0.9, gt=0, le=1, description="Nucleus sampling mass.")
    top_k: int = Field(
        default=40,
        ge=0,
        description="Sample from the k most likely tokens (0: all). Sent to a model.server only when written here.",
    )
    repeat_penalty: float = Field(
        default=1.1,
        ge=1,
        le=2,
        description="Penalty for repeated tokens. Sent to a model.server only when written "
        "here (OpenAI's own API refuses it).",
    )
    max_tokens: int = Field(default=256, ge=1, le=8192, description="Longest answer in tokens.")
    seed: int = Field(default=0, description="Random seed; fixed so answers repeat.")


class Adapter(Strict):
    """A LoRA adapter in GGUF."""

    path: ModelPath = Field(description="LoRA adapter .gguf file.")
    scale: float = Field(default=1.0, ge=0, le=4, description="Adapter strength.")


class OpenAIServer(Strict):
    """An OpenAI-compatible server (llama-server, vLLM, a hosted model) used instead of a local GGUF."""

    base_url: str = Field(pattern=r"^https?://", description="Base URL, e.g. http://127.0.0.1:8080/v1.")
    model: str = Field(min_length=1, description="Model name the server expects.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")


class ModelSettings(Strict):
    """The language model."""

    gguf: ModelPath = Field(
        default=EMBEDDED,
        description=f"'embedded' (the default, {lookup('embedded').title}), 'embedded:<name>' with a name from "
        f"{', '.join(MODELS)} "
        "(assembled from their PyPI packages, see `kit prepare --help`), or a .gguf path.",
    )
    adapters: list[Adapter] = Field(
        default_factory=list,
        description="LoRA adapters applied at load. Not with model.server: the server loads them (docs/SCALE_OUT.md).",
    )
    chat_template: Literal["gemma", "chatml", "llama3"] = Field(
        default="gemma",
        description="Prompt format; the same one fine-tuning uses. Default: the embedded model's own (chatml for "
        "the instruct models, the default among them), else gemma.",
    )
    n_ctx: int = Field(default=4096, ge=512, le=131072, description="Context window in tokens.")
    n_threads: int | None = Field(default=None, ge=1, description="CPU threads; default: all cores.")
    n_gpu_layers: int = Field(default=0, ge=-1, description="Layers offloaded to a GPU (-1: all).")
    sampling: Sampling = Field(default_factory=Sampling, description="Sampling settings.")
    suppress_untrained: bool = Field(
        default=True,
        description="Never generate tokens the model never learned (reserved <unusedN> tokens and those whose "
        "embeddings sit with them; the template's stop tokens excepted). See kit/components/untrained.py. No "
        "effect on a model.server engine (it needs the logits).",
    )
    fact_lock: bool = Field(
        default=True,
        description="While a local model writes, a number, price, date, id, phone or e-mail can only be a copy of "
        "one in its prompt (kit/components/fact_lock.py). No effect on a model.server engine.",
    )
    claim_check: bool = Field(
        default=True,
        description="Before an answer is sent, drop sentences whose facts no given document holds, cut run-on text, "
        "replace a 'yes' the passage contradicts; quote the passage when nothing is left (kit/services/claims.py).",
    )
    server: OpenAIServer | None = Field(
        default=None,
        description="Use an OpenAI-compatible server instead (llama-server, vLLM, llama-cpp-python's; "
        "docs/SCALE_OUT.md). Set n_ctx to its context size.",
    )

    @model_validator(mode="before")
    @classmethod
    def _embedded_template(cls, data: Any) -> Any:
        """An embedded model's own template by default (an instruct model accepts no other: it was tuned on it)."""
        gguf = data.get("gguf", EMBEDDED) if isinstance(data, dict) else None
        if not isinstance(gguf, str) or not is_embedded(gguf):
            return data
        try:
            model = lookup(gguf)
        except ValueError:
            return data  # the field's own check reports it
        return data if "chat_template" in data else {**data, "chat_template": model.chat_template}

    @model_validator(mode="after")
    def _instruct_template(self) -> ModelSettings:
        """An embedded instruct model takes its own turns only; a model.server's model is not model.gguf."""
        model = lookup(self.gguf) if is_embedded(self.gguf) else None
        if self.server is None and model and model.instruct and self.chat_template != model.chat_template:
            raise ValueError(
                f"chat_template '{self.chat_template}' does not fit {self.gguf}, an instruct model tuned on "
                f"'{model.chat_template}' turns; remove chat_template or set it to {model.chat_template}"
            )
        return self


class Training(Strict):
    """Fine-tuning data and settings."""

    conversations: list[FilePath] = Field(min_length=1, description="Conversation JSONL files to train on.")
    preset: str = Field(default="cpu-270m", description="Fine-tune preset name (see `kit finetune --help`).")
    validation_fraction: float = Field(default=0.1, ge=0, lt=0.5, description="Share held out for val loss.")
    base_model: str | None = Field(default=None, description="Base model to tune; default: the preset's.")
    license_file: OptionalFile = Field(default=None, description="Licence of a user-supplied base model.")


class Thresholds(Strict):
    """Eval gate on the strict scores of the held-out split (the whole set when there is none): the lowest (or, for
    what to minimise, highest) acceptable values. The defaults are the kit's goals for a shipped assistant."""

    answer_correctness: float = Field(
        default=0.8, ge=0, le=1, description="Minimum share of strictly correct answers (and 'unknown' items)."
    )
    citation_correctness: float = Field(
        default=0.9, ge=0, le=1, description="Minimum share citing the right rows or sections."
    )
    groundedness: float = Field(default=1.0, ge=0, le=1, description="Minimum share of answers with no invented fact.")
    invented_facts: int = Field(default=0, ge=0, description="Maximum number of invented facts over the split.")
    junk_answers: int = Field(default=0, ge=0, description="Maximum number of answers with junk or run-on text.")
    wrong_yes_no_rate: float = Field(
        default=0.05, ge=0, le=1, description="Maximum share of yes/no questions answered with the wrong polarity."
    )
    refusal_rate: float = Field(default=0.95, ge=0, le=1, description="Minimum share of must-refuse items refused.")
    false_refusal_rate: float = Field(default=0.05, ge=0, le=1, description="Maximum share of in-domain refusals.")
    handoff_accuracy: float = Field(default=0.8, ge=0, le=1, description="Minimum share of hand-offs done right.")
    recall_at_k: float = Field(default=0.9, ge=0, le=1, description="Minimum retrieval recall@k (rows, sections).")


class SafetyGate(Strict):
    """Gate on the held-out split of the safety set (eval.safety), scored by the guardrails alone."""

    rules: list[str] = Field(
        default_factory=list,
        description="Rules or hand-off triggers whose held-out recall is gated, e.g. [emergency].",
    )
    recall: float = Field(default=0.98, ge=0, le=1, description="Minimum held-out recall of each rule in `rules`.")
    false_positive_rate: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Maximum share of held-out ordinary messages (expect: none) that fire any rule or trigger.",
    )


class Evaluation(Strict):
    """The eval sets and the ship gate."""

    set: FilePath = Field(description="Eval JSONL file: the development set (may overlap what training asks).")
    heldout: OptionalFile = Field(
        default=None,
        description="Held-out eval JSONL: facts and phrasings no training conversation holds, never tuned on. "
        "Scored apart; the gate reads it.",
    )
    thresholds: Thresholds = Field(default_factory=Thresholds, description="Gate thresholds.")
    safety: OptionalFile = Field(
        default=None,
        description="Safety set JSONL: messages labelled with the rule or trigger that must fire (or none), with a "
        "calibration and a held-out split; scored by `kit eval --safety`, no model needed.",
    )
    safety_gate: SafetyGate = Field(default_factory=SafetyGate, description="Gate on the safety set's held-out split.")
    price_per_hour: float = Field(default=0.05, ge=0, description="Hardware price per hour for cost estimates.")


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
        "phone and card numbers, dates of birth, street addresses, names given; kit/services/pii.py); 'full': as "
        "written; 'none': no transcript at all (no ratings either).",
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
        return self


def _check_patterns(patterns: list[str]) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of domain.yaml, for editors and data_templates/."""
    return DomainSpec.model_json_schema()

"""Training data: a domain's conversations -> grounded, tokenised examples with labels on the assistant's tokens.

Each example is the exact prompt the runtime would send for the conversation's last question: the domain's
system prompt, earlier turns with the documents they were sent with, and the question with the chunks retrieval
finds for it, fitted to ``max_length`` with the runtime's own ``fit``. Which query retrieval gets for a short
follow-up, and how a turn and its documents are written, come from ``kit.services.assistant.prompt`` (the one follow-up
rule and the prompt contract), so training never sees a prompt the runtime would not send.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kit.chunk import Chunk
from kit.components.chat_template import ChatMessage, get_template, render_with_spans
from kit.domain import Domain
from kit.errors import DataError, Problem, ValidationFailed
from kit.records import Conversation
from kit.services.training.preset import Preset

logger = logging.getLogger(__name__)


@dataclass
class Example:
    """One training sequence: the messages as the runtime would send them, and its tokens."""

    messages: list[ChatMessage]
    input_ids: list[int]
    labels: list[int]
    where: str  # file:line of the conversation

    def record(self) -> dict[str, Any]:
        return {"where": self.where, "messages": self.messages, "input_ids": self.input_ids, "labels": self.labels}


class TokenCounter:
    """What ``kit.services.assistant.prompt.fit`` needs from an engine, backed by the training tokenizer."""

    def __init__(self, tokenizer: Any, template: str, n_ctx: int) -> None:
        self.tokenizer, self.template, self.n_ctx = tokenizer, get_template(template), n_ctx

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return len(self.tokenizer(self.template.render(messages))["input_ids"])


def read_conversations(domain: Domain) -> list[tuple[str, Conversation]]:
    """Every conversation of the domain's training files with its ``file:line``; all problems at once."""
    from kit.validation.files import read_jsonl

    found: list[tuple[str, Conversation]] = []
    problems: list[Problem] = []
    for rel in domain.conversation_files:
        records, bad = read_jsonl(domain.path(rel), rel, Conversation)
        found += [(f"{rel}:{line}", conv) for line, conv in records]
        problems += bad
    if problems:
        raise ValidationFailed(problems)
    if not found:
        raise DataError("the training set is empty", "add conversations to the files under training.conversations")
    return found


def ground(conv: Conversation, system: str, retriever: Any, counter: TokenCounter, k: int) -> list[ChatMessage] | None:
    """The messages the runtime would send for ``conv``'s last question, plus its answer (its citations added, see
    ``kit.services.training.citations``); None if nothing fits. Chunks an example names as its sources (``kit synth``
    records them) come first, as its answer cites them."""
    from kit.components.llm import ContextOverflow
    from kit.services.assistant.prompt import fit, follow_up_query, user_turn
    from kit.services.training.citations import cite

    msgs = [m for m in conv.messages if m.role != "system"]  # the runtime's own system prompt is used
    last_user = max(i for i, m in enumerate(msgs) if m.role == "user")
    history: list[ChatMessage] = []
    previous, shown = "", []
    for m in msgs[:last_user]:
        if m.role == "user":
            shown = documents(conv, retriever, follow_up_query(m.content, previous) or m.content, k)
            history.append(user_turn(m.content, shown))
            previous = m.content
        else:
            history.append(ChatMessage(role="assistant", content=cite(m.content, shown, conv.sources)))
    question = msgs[last_user].content.strip()
    answer = "\n\n".join(m.content for m in msgs[last_user + 1 :])
    stop = counter.template.stop[0]
    reserve = len(counter.tokenizer(answer + stop, add_special_tokens=False)["input_ids"]) + 12  # + citations
    chunks = documents(conv, retriever, follow_up_query(question, previous) or question, k)
    try:
        messages, kept = fit(counter, system, history, question, chunks, reserve)
    except ContextOverflow:
        return None
    return [*messages, ChatMessage(role="assistant", content=cite(answer, kept, conv.sources))]


def documents(conv: Conversation, retriever: Any, query: str, k: int) -> list[Chunk]:
    """The k chunks retrieval gives for ``query``, after the chunks the conversation names as its sources."""
    from kit.services.synth.examples import resolve_sources

    retrieved = retriever.retrieve(query, k)
    recorded = resolve_sources(conv.sources, retriever.chunks)
    ids = {c.id for c in recorded}
    return [*recorded, *(c for c in retrieved if c.id not in ids)][: max(k, len(recorded))]


def tokenise(messages: list[ChatMessage], tokenizer: Any, template: str, where: str) -> Example:
    """Token ids of the rendered conversation; labels only where the assistant speaks (answer + stop)."""
    from kit.components.trainer import IGNORE

    text, spans = render_with_spans(messages, template)
    enc = tokenizer(text, return_offsets_mapping=True)
    labels = []
    for tok, (start, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        inside = end > start and any(s <= start and end <= e for s, e in spans)
        labels.append(tok if inside else IGNORE)
    return Example(messages, list(enc["input_ids"]), labels, where)


def build_examples(
    domain: Domain, retriever: Any, tokenizer: Any, template: str, max_length: int, k: int
) -> list[Example]:
    """Grounded, tokenised examples of every conversation; every one that cannot fit is reported together."""
    from kit.services.assistant.prompt import system_prompt

    system = system_prompt(domain)
    counter = TokenCounter(tokenizer, template, max_length)
    examples: list[Example] = []
    problems: list[Problem] = []
    for where, conv in read_conversations(domain):
        messages = ground(conv, system, retriever, counter, k)
        example = tokenise(messages, tokenizer, template, where) if messages else None
        if example is None or len(example.input_ids) > max_length:
            bare = [ChatMessage(role="system", content=system), *[dict(m) for m in conv.messages[-2:]]]
            need = counter.count_tokens(bare)  # type: ignore[arg-type]
            file, line = where.rsplit(":", 1)
            problems.append(Problem(
                file, int(line), f"the conversation needs more than max_length={max_length} tokens "
                f"(at least {need} without any document)", "shorten it, or raise --max-length",
            ))  # fmt: skip
        else:
            examples.append(example)
    if problems:
        raise ValidationFailed(problems)
    return examples


def grounded_examples(domain: Domain, tokenizer: Any, template: str, preset: Preset) -> list[Example]:
    """Index the domain if needed, then ground every conversation with retrieval as the runtime does."""
    from kit.services.retrieval.ingest import index_domain
    from kit.services.retrieval.retrieve import Retriever

    index_domain(domain, progress=False)
    retriever = Retriever.open(domain)
    k = preset.k or domain.spec.retrieval.k
    examples = build_examples(domain, retriever, tokenizer, template, preset.max_length, k)
    logger.info("grounded %d training examples with %d retrieved chunks each", len(examples), k)
    return examples


def split(
    examples: list[Example], convs: dict[str, Conversation], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, val): whole groups (paraphrases of one fact) go to one side, chosen at random with ``seed``."""

    def key(e: Example) -> str:
        c = convs[e.where]
        return c.group or c.id or e.where

    groups = sorted({key(e) for e in examples})
    random.Random(seed).shuffle(groups)
    n_val = round(len(groups) * fraction) if len(groups) > 1 else 0
    if fraction > 0 and len(groups) > 1:
        n_val = max(1, n_val)
    held = set(groups[:n_val])
    train = [e for e in examples if key(e) not in held]
    val = [e for e in examples if key(e) in held]
    if not train:
        raise DataError("no training examples are left after the validation split", "add conversations")
    return train, val

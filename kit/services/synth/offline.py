"""Offline synthesis: questions from templates, answers quoting the chunk's own facts.

CSV rows give their columns as placeholders (``{price}``, ``{stock}``), Markdown sections their
heading and text (``{heading}``, ``{topic}``, ``{body}``), FAQ entries ``{question}`` and
``{answer}``. Every phrasing also gets a casual copy and typo'd copies, drawn with a seeded random
generator per chunk and intent, so the same seed gives the same file whatever the order of work.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from kit.chunk import Chunk
from kit.services.synth.examples import Example
from kit.services.synth.templates import FollowUp, Intent, Templates, TextTemplates, holds

PLACEHOLDER = re.compile(r"\{(\w+)(?:\|(lower|upper|title))?\}")
BODY_CHARS = 480


class Missing(Exception):
    """A placeholder the chunk has no value for: the template does not apply to it."""


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``{name}`` and ``{name|lower}`` placeholders; Missing when a value is absent or empty."""

    def fill(m: re.Match[str]) -> str:
        value = values.get(m.group(1), "")
        if not value:
            raise Missing(m.group(1))
        return {"lower": value.lower(), "upper": value.upper(), "title": value.title()}.get(m.group(2) or "", value)

    return PLACEHOLDER.sub(fill, template).strip()


def kind(chunk: Chunk) -> str:
    """'row' (CSV), 'faq' (FAQ JSONL) or 'section' (Markdown, text, HTML, PDF)."""
    if "row_id" in chunk.metadata:
        return "row"
    if chunk.source.endswith(".jsonl") and chunk.text.startswith("Q: "):
        return "faq"
    return "section"


def chunk_values(chunk: Chunk, cite: str) -> dict[str, str]:
    """The placeholders a chunk offers."""
    values = {"title": chunk.title, "cite": cite, "source": chunk.source}
    k = kind(chunk)
    if k == "row":
        for line in chunk.text.splitlines()[1:]:
            name, sep, value = line.partition(": ")
            if sep:
                values[name.strip().replace(" ", "_")] = value.strip()
        values["id"] = chunk.metadata["row_id"]
        values["label"] = chunk.title.split(" — ", 1)[-1]
    elif k == "faq":
        question, _, answer = chunk.text.partition("\nA: ")
        values |= {"question": question.removeprefix("Q: ").strip(), "answer": answer.strip()}
        values["category"] = chunk.metadata.get("category", "")
    else:
        parts = [p.strip() for p in chunk.title.split(" > ") if p.strip()] or [chunk.source]
        values |= {"document": parts[0], "heading": parts[-1], "topic": parts[-1].lower(), "body": body(chunk)}
    return values


def body(chunk: Chunk) -> str:
    """The section's text without its title line or Markdown marks, cut at a sentence near BODY_CHARS."""
    lines = chunk.text.splitlines()[1:]
    text_lines = [re.sub(r"^\s*(?:[-*+]|#+|\d+[.)])\s+", "", ln).replace("**", "").replace("__", "") for ln in lines]
    sentences: list[str] = []
    for line in (ln.strip() for ln in text_lines if ln.strip()):
        line = line if line[-1] in ".!?:;" else line + "."
        sentences += re.split(r"(?<=[.!?])\s+(?=[A-Z])", line)
    out: list[str] = []
    for sentence in sentences:
        if out and len(" ".join([*out, sentence])) > BODY_CHARS:
            break
        out.append(sentence)
    return " ".join(out)


def casual(question: str) -> str:
    """Lower case, no apostrophes, no closing punctuation: 'whats the price on the summit ul1'."""
    return re.sub(r"[?!.]+$", "", question.lower().replace("'", "").replace("’", "")).strip()


def typo(question: str, rng: random.Random) -> str:
    """One slip of the finger: two neighbouring letters swapped, or one dropped, in a longer word."""
    words = question.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return question
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rng.random() < 0.6 else w[:j] + w[j + 1 :]
    return " ".join(words)


def styled(question: str, templates: Templates, rng: random.Random) -> str:
    """The question as written, or (in the templates' shares) casually or with a typo.

    A style replaces the phrasing rather than adding a copy: a lower-case copy of a question is a
    near-duplicate of it, and de-duplication would rightly drop it.
    """
    roll = rng.random()
    if roll < templates.casual:
        return casual(question)
    if roll < templates.casual + templates.typos:
        return typo(question, rng)
    return question


def phrasings(intent: Intent, values: dict[str, str], templates: Templates, rng: random.Random) -> list[str]:
    """Every phrasing of the intent for these values, each in a drawn style, without repeats."""
    out: list[str] = []
    for template in intent.questions:
        try:
            out.append(styled(render(template, values), templates, rng))
        except Missing:
            continue
    return list(dict.fromkeys(out))


def answer(intent: Intent, values: dict[str, str]) -> str | None:
    """The first answer whose condition holds, filled in; None when the chunk lacks a value it needs."""
    for option in intent.answers:
        if holds(option.when, values):
            try:
                return render(option.text, values)
            except Missing:
                return None
    return None


def expand(intent: Intent, values: dict[str, str], skip: set[str]) -> Iterator[tuple[Intent, dict[str, str]]]:
    """The intent once, or once per field of a row when ``each_field`` is set."""
    if not intent.each_field:
        yield intent, values
        return
    for name, value in values.items():
        if name not in skip and value:
            yield intent, values | {"field": name.replace("_", " "), "value": value}


BUILTINS = {"title", "cite", "source", "id", "label", "document", "heading", "topic", "body", "question", "answer"}


def from_chunk(chunk: Chunk, position: int, templates: Templates, per_chunk: int, seed: int) -> Iterator[Example]:
    """The examples one chunk gives: ``per_chunk`` phrasings per intent, plus its follow-ups."""
    k = kind(chunk)
    table = templates.table_for(chunk.source) if k == "row" else None
    text: TextTemplates | None = templates.faq if k == "faq" else templates.sections if k == "section" else None
    intents = [i for i in (table.intents if table else text.intents if text else []) if i.applies(chunk.source)]
    follow_ups = table.follow_ups if table else text.follow_ups if text else []
    values = chunk_values(chunk, templates.cite)
    group = chunk.cite()  # every example about one chunk shares a group, so a split never separates its facts
    answered: dict[str, tuple[list[str], str]] = {}
    for n, intent in enumerate(intents):
        for m, (it, vals) in enumerate(expand(intent, values, BUILTINS)):
            rng = random.Random(f"{seed}:{chunk.id}:{it.intent}:{m}")
            reply = answer(it, vals)
            pool = phrasings(it, vals, templates, rng)
            if reply is None or not pool:
                continue
            answered.setdefault(it.intent, (pool, reply))
            for j, q in enumerate(rng.sample(pool, min(per_chunk, len(pool)))):
                yield Example([(q, reply)], it.intent, group, [chunk], (position, n, m, j))
    yield from _follow_ups(chunk, position, follow_ups, answered, values, templates, seed, len(intents))


def _follow_ups(
    chunk: Chunk,
    position: int,
    follow_ups: list[FollowUp],
    answered: dict[str, tuple[list[str], str]],
    values: dict[str, str],
    templates: Templates,
    seed: int,
    base: int,
) -> Iterator[Example]:
    for n, follow in enumerate(follow_ups):
        if follow.after not in answered or follow.intent not in answered:
            continue
        rng = random.Random(f"{seed}:{chunk.id}:{follow.after}>{follow.intent}")
        first_pool, first_reply = answered[follow.after]
        second = Intent(intent=follow.intent, questions=follow.questions, answers=[{"text": "-"}])  # type: ignore[list-item]
        pool = phrasings(second, values, templates, rng)
        if not pool:
            continue
        turns = [(rng.choice(first_pool), first_reply), (rng.choice(pool), answered[follow.intent][1])]
        yield Example(turns, f"{follow.intent}_followup", chunk.cite(), [chunk], (position, base + n, 0, 0))

"""`kit synth`: training conversations from a domain's own documents.

The recipe reads top to bottom: collect the chunks → generate (templates offline, or a teacher
model) → add refusal, hand-off and rule examples from the domain's guardrails → drop every answer
with a fact its source chunk does not hold → de-duplicate → split by paraphrase group → write the
train and validation files and the stats.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.chunk import Chunk
from kit.domain import Domain
from kit.files import replace_text
from kit.services.assistant.facts import unsupported
from kit.services.synth.dedup import deduplicate
from kit.services.synth.examples import Example, chunk_ref, resolve_sources
from kit.services.synth.guarded import guarded_examples
from kit.services.synth.offline import from_chunk
from kit.services.synth.split import split
from kit.services.synth.teacher import Journal, TeacherClient, TeacherSpec, journal_key, run_teacher
from kit.services.synth.templates import Templates, load_templates

__all__ = ["SynthOptions", "SynthReport", "chunk_ref", "resolve_sources", "synthesize", "val_path"]
DEFAULT_OUT = "data/synth.jsonl"


@dataclass(frozen=True)
class SynthOptions:
    """How to synthesise: the CLI's flags."""

    out: Path
    per_chunk: int = 3
    seed: int = 0
    val_fraction: float = 0.1
    teacher: TeacherSpec | None = None
    concurrency: int = 4
    retries: int = 4
    backoff_s: float = 1.0
    limit: int | None = None  # only the first N chunks (a cheap first teacher run)
    with_context: bool = False  # put the source chunks in the user turns, as the runtime's prompt does
    fresh: bool = False  # forget the teacher journal and ask again
    progress: bool = True


@dataclass
class SynthReport:
    """What one run produced and dropped."""

    train: int = 0
    validation: int = 0
    chunks: int = 0
    kept_by_intent: Counter[str] = field(default_factory=Counter)
    dropped_by_intent: Counter[str] = field(default_factory=Counter)
    kept_by_source: Counter[str] = field(default_factory=Counter)
    dropped_by_source: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> count
    drop_samples: list[str] = field(default_factory=list)  # a few, to show what went wrong
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failed_chunks: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def drop(self, reason: str, ex: Example | None, detail: str = "") -> None:
        self.dropped[reason] += 1
        if ex is not None:
            self.dropped_by_intent[ex.intent] += 1
            self.dropped_by_source[_source(ex)] += 1
        if len(self.drop_samples) < 10 and detail:
            self.drop_samples.append(f"{reason}: {detail}")

    def as_json(self) -> dict[str, Any]:
        return {
            "train": self.train, "validation": self.validation, "chunks": self.chunks,
            "kept_by_intent": dict(sorted(self.kept_by_intent.items())),
            "dropped_by_intent": dict(sorted(self.dropped_by_intent.items())),
            "kept_by_source": dict(sorted(self.kept_by_source.items())),
            "dropped_by_source": dict(sorted(self.dropped_by_source.items())),
            "dropped": dict(sorted(self.dropped.items())), "drop_samples": self.drop_samples,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "retries": self.retries, "failed_chunks": self.failed_chunks,
            "files": [str(p) for p in self.files],
        }  # fmt: skip


def _source(ex: Example) -> str:
    return ex.chunks[0].source if ex.chunks else "domain.yaml"


def synthesize(domain: Domain, options: SynthOptions) -> SynthReport:
    """Generate, check, de-duplicate, split and write; the report says what was kept and dropped."""
    from kit.services.retrieval.ingest import collect

    report = SynthReport()
    templates = load_templates(domain.root)
    chunks, _, _ = collect(domain)
    chunks = chunks[: options.limit] if options.limit else chunks
    report.chunks = len(chunks)
    if options.teacher is not None:
        made = teacher_examples(domain, chunks, templates, options, report)
    else:
        made = [ex for i, c in enumerate(chunks) for ex in from_chunk(c, i, templates, options.per_chunk, options.seed)]
    guarded, not_fired = guarded_examples(domain.spec, templates, options.seed)
    for reason, question in not_fired:
        report.drop(reason, None, question)
    checked = [ex for ex in made if _grounded(ex, report)] + guarded
    kept, duplicates = deduplicate(sorted(checked, key=lambda ex: ex.order))
    for reason, ex in duplicates:
        report.drop(reason, ex, ex.question)
    train, validation = split(kept, options.val_fraction, options.seed)
    random.Random(f"{options.seed}:shuffle").shuffle(train)
    for ex in kept:
        report.kept_by_intent[ex.intent] += 1
        report.kept_by_source[_source(ex)] += 1
    report.train, report.validation = len(train), len(validation)
    report.files = write(domain, options, train, validation, report)
    return report


def _grounded(ex: Example, report: SynthReport) -> bool:
    """Every answer's facts occur in the example's source chunks; otherwise drop and count it."""
    texts = [c.text for c in ex.chunks]
    for question, answer in ex.turns:
        invented = unsupported(answer, *texts)
        if invented:
            report.drop("unsupported fact", ex, f"{', '.join(invented)} in the answer to '{question}' ({ex.group})")
            return False
    return True


def teacher_examples(
    domain: Domain, chunks: list[Chunk], templates: Templates, options: SynthOptions, report: SynthReport
) -> list[Example]:
    """Ask the teacher about every chunk not yet in the journal, then turn every journalled reply into examples."""
    spec = options.teacher
    assert spec is not None
    journal = Journal.open(journal_path(domain, options), options.fresh)
    client = TeacherClient(spec, retries=options.retries, backoff_s=options.backoff_s)
    try:
        for chunk_id, error in run_teacher(
            client, chunks, journal, options.per_chunk, options.seed, domain.spec.display_name, templates.cite,
            options.concurrency, options.progress,
        ):  # fmt: skip
            report.failed_chunks.append(chunk_id)
            report.drop("teacher failed", None, error)
    finally:
        client.close()
    examples: list[Example] = []
    for position, chunk in enumerate(chunks):
        row = journal.done.get(journal_key(chunk, spec, options.per_chunk, options.seed))
        if row is None:
            continue
        report.prompt_tokens += row.get("prompt_tokens", 0)
        report.completion_tokens += row.get("completion_tokens", 0)
        report.retries += row.get("retries", 0)
        if not row["pairs"]:
            report.drop("teacher reply unreadable", None, chunk.cite())
        for i, pair in enumerate(row["pairs"]):
            turns = [(pair["question"], pair["answer"])]
            examples.append(Example(turns, pair["intent"], chunk.cite(), [chunk], (position, i), "teacher"))
    return examples


def journal_path(domain: Domain, options: SynthOptions) -> Path:
    """Where the teacher's replies are kept between runs (the domain's git-ignored build folder)."""
    return domain.build_dir / "synth" / f"{options.out.stem}.teacher.jsonl"


def val_path(out: Path) -> Path:
    """The validation file next to the train file: data/synth.jsonl → data/synth.val.jsonl."""
    return out.with_name(f"{out.stem}.val{out.suffix or '.jsonl'}")


def write(
    domain: Domain, options: SynthOptions, train: list[Example], validation: list[Example], report: SynthReport
) -> list[Path]:
    """Write the files atomically; the stats go to the build folder."""
    files = [(options.out, train)] + ([(val_path(options.out), validation)] if validation else [])
    written: list[Path] = []
    for path, examples in files:
        lines = [json.dumps(ex.record(domain.name, options.with_context), ensure_ascii=False) for ex in examples]
        replace_text(path, "".join(f"{line}\n" for line in lines))
        written.append(path)
    if not validation:
        val_path(options.out).unlink(missing_ok=True)  # never leave a stale validation file from an older run
    stats = domain.build_dir / "synth" / f"{options.out.stem}.stats.json"
    report.files = written
    replace_text(stats, json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n")
    return [*written, stats]

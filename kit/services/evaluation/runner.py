"""Run a domain's eval set through the whole pipeline (guardrails, retrieval, model) for one model."""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.components.chat_template import ChatMessage
from kit.components.llm import model_label
from kit.domain import Domain
from kit.errors import KitError
from kit.model_registry import is_embedded, lookup
from kit.records import EvalItem
from kit.services.evaluation.metrics import Scored, Turn, score
from kit.settings import ModelSettings, OpenAIServer
from kit.validation.files import read_jsonl

SPEC_HELP = "use configured, base, tuned, embedded[:<name>], a .gguf path, or openai:<base_url>#<model>"


@dataclass(frozen=True)
class ModelChoice:
    """A model to evaluate: how to build it, what to call it, what it costs."""

    spec: str
    label: str
    settings: ModelSettings
    size_bytes: int | None  # GGUF + adapters on disk; None for an endpoint

    @property
    def endpoint(self) -> bool:
        return self.settings.server is not None


SPLITS = ("heldout", "dev")  # the held-out file, and the development set (eval.set)


@dataclass(frozen=True)
class Case:
    """One eval item, the split it belongs to and where it is written."""

    item: EvalItem
    split: str  # "heldout" or "dev"
    place: str  # file:line, relative to the domain


@dataclass
class Outcome:
    """One item's reply and verdicts."""

    item: EvalItem
    split: str
    answer: str
    kind: str
    withheld: bool  # the output guard replaced the model's answer with its notice
    sources: list[str]
    scored: Scored
    ttft_s: float
    generation_s: float  # after the model's first token
    total_s: float
    tokens_in: int
    tokens_out: int
    checks: list[str] = field(default_factory=list)  # the claim check's decisions
    fallback: bool = False  # the answer is a quoted passage


@dataclass
class ModelRun:
    """All outcomes of one model, and the process's peak memory while it ran."""

    choice: ModelChoice
    outcomes: list[Outcome] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    seconds: float = 0.0


def choose(domain: Domain, spec: str, api_key_env: str = "OPENAI_API_KEY") -> ModelChoice:
    """Parse a --model value into a ModelChoice."""
    model = domain.spec.model
    if spec.startswith("openai:"):
        url, _, name = spec.removeprefix("openai:").partition("#")
        if not url.startswith(("http://", "https://")) or not name:
            raise KitError(
                f"model '{spec}' is not openai:<base_url>#<model>", "e.g. openai:http://127.0.0.1:8080/v1#big"
            )
        server = OpenAIServer(base_url=url, model=name, api_key_env=api_key_env)
        return ModelChoice(spec, name, model.model_copy(update={"server": server, "adapters": []}), None)
    if spec in ("configured", "base", "tuned"):
        if spec == "tuned" and not model.adapters:
            raise KitError(
                "the domain has no tuned adapter (model.adapters is empty)",
                "run kit finetune and kit export, or evaluate 'base'",
            )
        settings = model.model_copy(update={"adapters": []}) if spec == "base" else model
        return ModelChoice(spec, model_label(settings), settings, _size(domain, settings))
    if is_embedded(spec):  # embedded or embedded:<name>, without the domain's adapters, in its own template
        try:
            lookup(spec)
        except ValueError as exc:
            raise KitError(str(exc), SPEC_HELP) from None
        data = model.model_dump(exclude={"gguf", "adapters", "chat_template", "server"})
        settings = ModelSettings.model_validate({**data, "gguf": spec, "adapters": []})
        return ModelChoice(spec, model_label(settings), settings, _size(domain, settings))
    path = Path(spec).expanduser().resolve()
    if path.suffix != ".gguf" or not path.is_file():
        raise KitError(f"model '{spec}' is neither a known name nor an existing .gguf file", SPEC_HELP)
    settings = model.model_copy(update={"gguf": str(path), "adapters": [], "server": None})
    return ModelChoice(spec, path.stem, settings, _size(domain, settings))


def _size(domain: Domain, settings: ModelSettings) -> int | None:
    if settings.server is not None:
        return None
    from kit.components.llm import model_path

    files = [model_path(settings.gguf, domain.root)] + [model_path(a.path, domain.root) for a in settings.adapters]
    return sum(f.stat().st_size for f in files if f.is_file())


def load_items(domain: Domain, limit: int | None = None, split: str = "all") -> list[Case]:
    """The held-out items, then the development set, or one of them (``split``); already checked by kit validate,
    problems here raise."""
    from kit.errors import ValidationFailed

    cases: list[Case] = []
    problems = []
    spec = domain.spec.eval
    for name, rel in (("heldout", spec.heldout), ("dev", spec.set)):
        if rel is None or split not in ("all", name):
            continue
        records, found = read_jsonl(domain.path(rel), rel, EvalItem)
        problems += found
        cases += [Case(item, name, f"{rel}:{line}") for line, item in records]
    if problems:
        raise ValidationFailed(problems)
    return _spread(cases, limit) if limit else cases


def _spread(cases: list[Case], limit: int) -> list[Case]:
    """A subset keeping each split and kind represented (in turn)."""
    by_kind: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        by_kind.setdefault((case.split, case.item.expect), []).append(case)
    picked: list[Case] = []
    while len(picked) < min(limit, len(cases)):
        for group in by_kind.values():
            if group and len(picked) < limit:
                picked.append(group.pop(0))
    return picked


def run_model(domain: Domain, choice: ModelChoice, cases: Sequence[Case], progress: bool = True) -> ModelRun:
    """Every item through guardrails, retrieval and the model; peak RSS sampled meanwhile."""
    from tqdm import tqdm

    from kit.components.llm import build_engine
    from kit.services.assistant.chat import ChatService

    run = ModelRun(choice)
    sampler = _PeakRss()
    started = time.perf_counter()
    with sampler:
        service = ChatService.open(domain, build_engine(choice.settings, domain.root))
        for case in tqdm(cases, desc=choice.label, unit="q", disable=not progress, file=sys.stderr):
            run.outcomes.append(_one(service, case))
        del service
    run.seconds = time.perf_counter() - started
    run.peak_rss_mb = sampler.peak_mb
    return run


def _one(service: Any, case: Case) -> Outcome:
    from kit.services.assistant.reply import generation_s

    item = case.item
    history = [ChatMessage(role=m.role, content=m.content) for m in item.history]
    reply = service.ask(item.question, history)
    shown = reply.finish()
    # a withheld answer is scored on what reached the customer before the notice, not on the notice's source list
    answer = shown.split(service.domain.spec.scope.withheld_message)[0].rstrip() if reply.withheld else shown
    # what the model was given: the whole prompt (earlier turns' documents too), and the public contact
    context = "\n".join([reply.given, service.guardrails.handoff_message])
    turn = Turn(
        answer=answer, kind=reply.kind, rule=reply.reason if reply.kind == "rule" else None, given=reply.sources,
        cited=[reply.sources[n - 1] for n in reply.cited], context=context, withheld=bool(reply.withheld),
        hit_limit=reply.model_pieces >= service.domain.spec.model.sampling.max_tokens,
    )  # fmt: skip
    return Outcome(
        item=item, split=case.split, answer=shown, kind=reply.kind, withheld=bool(reply.withheld),
        sources=[s.label() for s in reply.sources], scored=score(item, turn),
        ttft_s=reply.ttft_s or 0.0, total_s=reply.total_s or 0.0, generation_s=generation_s(reply),
        tokens_in=reply.prompt_tokens, tokens_out=reply.tokens, checks=reply.checks, fallback=reply.fallback,
    )  # fmt: skip


class _PeakRss:
    """Samples this process's resident memory in a thread; the peak in MB."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakRss:
        import psutil

        proc = psutil.Process()

        def sample() -> None:
            while not self._stop.is_set():
                self.peak_mb = max(self.peak_mb, proc.memory_info().rss / 2**20)
                self._stop.wait(self.every_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def median(values: list[float]) -> float:
    """Median, 0 for no values."""
    return statistics.median(values) if values else 0.0

"""One chat turn: guardrails, retrieval, the prompt (kit/services/assistant/prompt.py), the model's streamed answer
through the output guard (kit/services/assistant/output_guard.py), and the reply (kit/services/assistant/reply.py)."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from kit.chunk import Chunk
from kit.components.chat_template import ChatMessage
from kit.components.llm import Engine
from kit.domain import Domain
from kit.errors import SpecError
from kit.services.assistant.claims import ClaimCheck, streamed
from kit.services.assistant.output_guard import OutputGuard, guarded, until_phantom_citation
from kit.services.assistant.prompt import (
    PROMPT_MARKERS,
    defang,
    fit,
    follow_up_query,
    last_question,
    system_prompt,
    with_documents,
)
from kit.services.assistant.reply import Reply, refs
from kit.services.safety.guardrails import Guardrails, Verdict, calibration_mismatch, recalibration_hint


class Retriever(Protocol):
    """What chat needs from retrieval (``kit.services.retrieval.retrieve.Retriever``)."""

    def retrieve(self, query: str, k: int | None = None, filters: dict[str, str] | None = None) -> list[Chunk]:
        """The k best chunks for ``query``, best first."""
        ...


class ChatService:
    """A domain's assistant: guardrails, retrieval and the model, one turn at a time."""

    def __init__(self, domain: Domain, engine: Engine, retriever: Retriever, guardrails: Guardrails) -> None:
        self.domain = domain
        self.engine = engine
        self.retriever = retriever
        self.guardrails = guardrails
        self.system = system_prompt(domain)
        sampling = domain.spec.model.sampling
        self.reserve = min(sampling.max_tokens, engine.n_ctx // 4)

    @classmethod
    def open(cls, domain: Domain, engine: Engine | None = None) -> ChatService:
        """Everything built from the domain: its index (IndexMissing if none), its model, its guardrails."""
        from kit.components.embedding import Embedder
        from kit.components.llm import build_engine
        from kit.services.retrieval.retrieve import Retriever as IndexRetriever
        from kit.services.safety.learned import screening

        mismatch = calibration_mismatch(domain.spec)
        if mismatch is not None:
            raise SpecError(
                f"{domain.root / 'domain.yaml'}: {mismatch}", recalibration_hint(domain.spec, str(domain.root))
            )

        def guardrails() -> Guardrails:
            guards = screening(domain, Embedder(domain.spec.retrieval.embedding_model).embed)  # learned checks too
            guards.warm()  # the rules' examples embed while the model loads, not on the first message
            return guards

        if engine is not None:
            return cls(domain, engine, IndexRetriever.open(domain), guardrails())
        # llama.cpp loads the model outside Python's lock: in a thread it costs no time beside the imports
        with ThreadPoolExecutor(max_workers=1) as pool:
            loading = pool.submit(build_engine, domain.spec.model, domain.root)
            try:
                retriever, guards = IndexRetriever.open(domain), guardrails()
            except Exception:
                model_error = loading.exception()  # a bad model file is the first thing to report
                if model_error is not None:
                    raise model_error from None
                raise
            return cls(domain, loading.result(), retriever, guards)

    def ask(self, question: str, history: Sequence[ChatMessage] = ()) -> Reply:
        """Answer ``question`` after ``history`` (earlier turns, oldest first; user turns as sent, or plain text, which
        gets its documents again). Iterate the reply to stream."""
        started = time.perf_counter()
        question = defang(question).strip()
        verdict = self.guardrails.screen(question)  # an emergency is answered before any retrieval
        if verdict.kind != "answer":
            return self._fixed(question, verdict, started)
        history = with_documents(history, self.retriever.retrieve)
        chunks, verdict = self._retrieve_in_scope(question, history)
        evidence = max((c.similarity for c in chunks if c.similarity is not None), default=None)
        if verdict.kind != "answer":
            return self._fixed(question, verdict, started, evidence)
        messages, chunks = fit(self.engine, self.system, history, question, chunks, self.reserve)
        reply = Reply(
            question=question, kind="answer", reason="", sources=refs(chunks), sent=messages[-1],
            model=self.engine.name, started=started, prompt_tokens=self.engine.count_tokens(messages),
            given="\n".join(m["content"] for m in messages), evidence=evidence,
        )  # fmt: skip
        pieces = until_phantom_citation(_timed(self.engine.stream(messages, stop=PROMPT_MARKERS), reply), len(chunks))
        if self.domain.spec.model.claim_check:
            known = "\n".join([self.system, self.guardrails.handoff_message, *(m["content"] for m in history)])
            reply.claims = ClaimCheck(question, reply.sources, known, self.guardrails.embed)
            pieces = streamed(pieces, reply.claims)
        reply.pieces = guarded(pieces, self.output_guard(messages), reply)
        return reply

    def output_guard(self, messages: Sequence[ChatMessage]) -> OutputGuard:
        """The guard for an answer to ``messages``; the domain's own contact details are public."""
        notice = self.domain.spec.scope.withheld_message
        return OutputGuard(self.system, messages, public=self.guardrails.handoff_message, notice=notice)

    def _retrieve_in_scope(self, question: str, history: Sequence[ChatMessage]) -> tuple[list[Chunk], Verdict]:
        """Chunks for the question and the scope verdict. A short follow-up ("and is it in stock?") is read
        with the previous question; one that looks like an out-of-scope example stays refused whatever came
        before."""
        chunks = self.retriever.retrieve(question)
        verdict = self.guardrails.scope(question, chunks)
        joined = follow_up_query(question, last_question(history))
        if joined is None or self.guardrails.looks_out_of_scope(question, chunks):
            return chunks, verdict
        joined_chunks = self.retriever.retrieve(joined)
        joined_verdict = self.guardrails.scope(joined, joined_chunks)
        return (joined_chunks, joined_verdict) if joined_verdict.kind == "answer" else (chunks, verdict)

    def _fixed(self, question: str, verdict: Verdict, started: float, evidence: float | None = None) -> Reply:
        sent = ChatMessage(role="user", content=question)
        return Reply(
            question=question, kind=verdict.kind, reason=verdict.reason, sources=[], sent=sent,
            model="guardrails", pieces=iter([verdict.message]), started=started, evidence=evidence,
            lead_form=verdict.lead_form,
        )  # fmt: skip

    def greeting(self) -> str:
        return self.domain.spec.persona.greeting


def _timed(pieces: Iterator[str], reply: Reply) -> Iterator[str]:
    """The model's pieces, noting when the first one came (generation speed is measured from there)."""
    try:
        for piece in pieces:
            if reply.first_token_s is None:
                reply.first_token_s = time.perf_counter() - reply.started
            reply.model_pieces += 1
            yield piece
    finally:
        if isinstance(pieces, Generator):
            pieces.close()  # frees the engine when the guard stops early

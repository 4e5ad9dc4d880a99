"""Teacher mode: a big model on any OpenAI-compatible server writes questions and answers per chunk.

``--teacher openai:<base_url>#<model>``; the API key, if the server needs one, comes from an
environment variable (``KIT_TEACHER_API_KEY`` unless told otherwise). Requests run in a thread pool;
connection errors, 408, 409, 429 and 5xx replies are retried with exponential back-off (honouring
``Retry-After``). Each chunk's result is appended to a journal in the domain's build folder and
flushed as soon as it arrives, so a killed run loses nothing already received, and the next run
asks only for the chunks still missing.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.chunk import Chunk
from kit.components.openai_client import OpenAIClient, Unreachable
from kit.errors import KitError

DEFAULT_KEY_ENV = "KIT_TEACHER_API_KEY"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
SYSTEM = (
    "You write training data for the customer assistant of {business}. You are given one document. Write "
    "questions real customers would ask that this document answers, in varied styles: polite, short, casual, "
    "one with a typo. Answer each one only from the document, quoting every number, price, date and "
    "identifier exactly as the document writes it, and end each answer with {cite}. Never add facts that "
    "are not in the document."
)
USER = (
    "Document {cite} ({ref}):\n<document>\n{text}\n</document>\n\n"
    'Write {n} question-answer pairs. Reply with JSON only: {{"pairs": [{{"intent": "<one lower-case word, '
    'such as price, stock, specs, policy>", "question": "...", "answer": "..."}}]}}'
)


@dataclass(frozen=True)
class TeacherSpec:
    """Where the teacher is: ``openai:<base_url>#<model>``."""

    base_url: str
    model: str
    key_env: str = DEFAULT_KEY_ENV

    @classmethod
    def parse(cls, text: str, key_env: str = DEFAULT_KEY_ENV) -> TeacherSpec:
        m = re.fullmatch(r"openai:(https?://[^#\s]+)#(\S+)", text.strip())
        if m is None:
            raise KitError(
                f"--teacher '{text}' is not openai:<base_url>#<model>",
                "write e.g. --teacher openai:http://127.0.0.1:8080/v1#llama-3.1-70b",
            )
        return cls(m.group(1).rstrip("/"), m.group(2), key_env)


class TeacherFailed(Exception):
    """One request failed after every retry (the chunk stays missing; a re-run asks again)."""


class TeacherRefused(KitError):
    """The server refuses us altogether (bad key, unknown model): stop the run."""


@dataclass
class Reply:
    """What the teacher returned for one chunk."""

    pairs: list[dict[str, str]]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0


class TeacherClient:
    """The teacher's chat completions over kit's OpenAI-compatible client, with retries and back-off."""

    def __init__(
        self,
        spec: TeacherSpec,
        retries: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.client = OpenAIClient(spec.base_url, spec.key_env, timeout_s)

    def close(self) -> None:
        self.client.close()

    def complete(self, messages: list[dict[str, str]], seed: int) -> tuple[dict[str, Any], int]:
        """The server's JSON reply to one chat completion, and how many retries it took."""
        body = {"model": self.spec.model, "messages": messages, "temperature": 0.7, "seed": seed}
        for attempt in range(self.retries + 1):
            wait_s = self.backoff_s * 2**attempt * (0.5 + random.random() / 2)
            try:
                response = self.client.post_chat(body)
            except Unreachable as exc:
                error = f"cannot reach {self.spec.base_url}: {exc}"
            else:
                if response.status_code == 200:
                    return response.json(), attempt
                if response.status_code in (401, 403, 404):
                    raise TeacherRefused(
                        f"the teacher at {self.spec.base_url} answered {response.status_code}: {response.text[:200]}",
                        f"check the URL and model name, and put the API key in ${self.spec.key_env}",
                    )
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRY_STATUS:
                    raise TeacherFailed(error)
                wait_s = max(wait_s, _retry_after(response.headers.get("retry-after")))
            if attempt < self.retries:
                self.sleep(min(wait_s, 60.0))
        raise TeacherFailed(error)

    def ask(self, chunk: Chunk, n: int, business: str, cite: str, seed: int) -> Reply:
        """``n`` question-answer pairs about one chunk."""
        messages = [
            {"role": "system", "content": SYSTEM.format(business=business, cite=cite)},
            {"role": "user", "content": USER.format(cite=cite, ref=chunk.cite(), text=chunk.text, n=n)},
        ]
        data, retries = self.complete(messages, seed)
        usage = data.get("usage") or {}
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            content = ""
        return Reply(parse_pairs(content), usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), retries)


def _retry_after(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0


def parse_pairs(content: str) -> list[dict[str, str]]:
    """The question-answer pairs in a reply (JSON, possibly in a code fence); [] when unreadable."""
    m = re.search(r"\{.*\}", content or "", re.DOTALL)
    if m is None:
        return []
    try:
        data = json.loads(m.group())
    except json.JSONDecodeError:
        return []
    pairs = data.get("pairs") if isinstance(data, dict) else None
    out: list[dict[str, str]] = []
    for p in pairs if isinstance(pairs, list) else []:
        if isinstance(p, dict) and str(p.get("question", "")).strip() and str(p.get("answer", "")).strip():
            intent = re.sub(r"[^a-z0-9_]", "_", str(p.get("intent") or "teacher").lower()).strip("_") or "teacher"
            if not intent[0].isalpha():
                intent = f"t_{intent}"
            out.append({"intent": intent, "question": str(p["question"]).strip(), "answer": str(p["answer"]).strip()})
    return out


@dataclass
class Journal:
    """The teacher's replies so far, one JSON line per chunk, appended and flushed as they arrive."""

    path: Path
    done: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path, fresh: bool) -> Journal:
        journal = cls(path)
        if fresh:
            path.unlink(missing_ok=True)
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    journal.done[row["key"]] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill: that chunk is asked again
        return journal

    def add(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[row["key"]] = row


def journal_key(chunk: Chunk, spec: TeacherSpec, n: int, seed: int) -> str:
    """Same chunk, teacher, count and seed: the same key, so a re-run reuses the reply."""
    return f"{chunk.id}|{spec.model}|{n}|{seed}"


def run_teacher(
    client: TeacherClient,
    chunks: list[Chunk],
    journal: Journal,
    n: int,
    seed: int,
    business: str,
    cite: str,
    concurrency: int,
    progress: bool,
) -> Iterator[tuple[str, str]]:
    """Ask the teacher about every chunk not in the journal; yields (chunk id, error) for chunks that failed."""
    from tqdm import tqdm

    todo = [c for c in chunks if journal_key(c, client.spec, n, seed) not in journal.done]
    with (
        ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool,
        tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc="teacher", unit="chunk",
             disable=not progress) as bar,
    ):  # fmt: skip
        pending: dict[Future[Reply], Chunk] = {}
        queue = iter(todo)
        try:
            for chunk in queue:
                pending[pool.submit(client.ask, chunk, n, business, cite, seed)] = chunk
                if len(pending) >= 2 * max(1, concurrency):
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    chunk = pending.pop(future)
                    try:
                        reply = future.result()
                    except TeacherFailed as exc:
                        yield chunk.id, str(exc)
                    else:
                        journal.add(
                            {"key": journal_key(chunk, client.spec, n, seed), "chunk": chunk.id, "pairs": reply.pairs,
                             "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                             "retries": reply.retries}
                        )  # fmt: skip
                    bar.update(1)
                    nxt = next(queue, None)
                    if nxt is not None:
                        pending[pool.submit(client.ask, nxt, n, business, cite, seed)] = nxt
        finally:
            for future in pending:
                future.cancel()

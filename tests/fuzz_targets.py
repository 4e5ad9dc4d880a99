"""Fuzz targets shared by the hypothesis tests (tests/test_fuzz.py) and the atheris runner (tests/fuzz/atheris_run.py).

Each target takes what a user or a customer could hand kit (a file's bytes, a request body) and fails
(raises) when the contract is broken: every input must end in a result or a clear, located message
(a ``kit validate`` problem list, a loader's skip reason, a 4xx JSON error), never another exception.
``COUNTS`` tallies the inputs each target ran, for the figures in docs/RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "data_templates" / "example"
COUNTS: Counter[str] = Counter()

# The files of the example domain a user edits, by what they are.
DATA_FILES = {
    "spec": "domain.yaml",
    "train": "data/train.jsonl",
    "eval": "eval/eval.jsonl",
    "table": "docs/catalogue.csv",
    "faq": "docs/faq.jsonl",
    "markdown": "docs/policies.md",
}
INGEST_SUFFIXES = (".md", ".txt", ".html", ".csv", ".jsonl", ".pdf")
PROBLEM_LINE = re.compile(r"^\S.*?(:\d+)?: \S")  # "file:line: what — hint" or "file: what"


@cache
def workspace() -> Path:
    """A private copy of the example domain, made once per process; targets restore what they change."""
    dest = Path(tempfile.mkdtemp(prefix="kit-fuzz-")) / "example"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build"))
    return dest


@contextlib.contextmanager
def replaced(rel: str, data: bytes) -> Iterator[Path]:
    """The workspace with one file's bytes replaced for the duration of the block."""
    path = workspace() / rel
    original = (EXAMPLE / rel).read_bytes() if (EXAMPLE / rel).exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        yield path
    finally:
        if original is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(original)


def run_cli(*args: str) -> tuple[int, str, str]:
    """``kit ARGS`` in this process, as a user runs it: (exit code, stdout, stderr)."""
    from kit.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["kit", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def validate_file(kind: str, data: bytes) -> None:
    """`kit validate` on the example domain with one of its files replaced by ``data``."""
    COUNTS[f"validate:{kind}"] += 1
    with replaced(DATA_FILES[kind], data):
        code, out, err = run_cli("validate", str(workspace()))
    assert code in (0, 1), f"exit {code}: {err[-500:]}"
    if code == 0:  # valid; warnings (an eval question training already asks, an echo item) may come on stderr
        assert out.endswith("is valid\n"), (out, err)
        assert all(line.startswith("warning: ") for line in err.splitlines()), err[-500:]
        return
    lines = err.removesuffix("\n").split("\n")
    assert lines and lines[-1].startswith("error: "), err[-500:]
    for line in lines[:-1]:
        assert PROBLEM_LINE.match(line), f"not a located problem: {line!r}"


@cache
def _retrieval() -> Any:
    from kit.domain import load_domain

    return load_domain(workspace()).spec.retrieval


def ingest(suffix: str, data: bytes) -> None:
    """One document through the loader `kit index` uses: chunks, or a Skip with a reason."""
    from kit.services.retrieval.loaders import Document, Skip, load

    COUNTS[f"ingest:{suffix}"] += 1
    settings = _retrieval()
    rel = f"docs/fuzzed{suffix}"
    with replaced(rel, data) as path:
        try:
            chunks = load(Document(path, rel), settings, workspace())
        except Skip as reason:
            assert str(reason).strip(), "a skip without a reason"
            return
    assert chunks, "no chunks and no skip reason"
    for chunk in chunks:
        assert chunk.text.strip() and chunk.source == rel and chunk.location, chunk
        if suffix not in (".csv", ".jsonl"):  # rows and FAQ entries are whole, whatever their size
            body = chunk.text.split("\n", 1)[-1] if suffix == ".pdf" else chunk.text.removeprefix(chunk.title + "\n")
            assert len(body) <= settings.chunk_size, (len(body), settings.chunk_size)


def chunking(text: str, size: int, overlap: int) -> None:
    """split() keeps every word, in pieces of at most ``size`` characters."""
    from kit.services.retrieval.chunking import sections, split

    COUNTS["chunking"] += 1
    for section in sections(text):
        pieces = split(section.body, size, overlap)
        assert all(0 < len(p) <= size for p in pieces), [len(p) for p in pieces]
        kept = " ".join(pieces)
        for word in section.body.split():
            if len(word) <= size:
                assert word in kept, word


def mask(text: str) -> None:
    """mask_pii never fails, and no e-mail address survives it."""
    from kit.services.safety.pii import _EMAIL, mask_pii

    COUNTS["mask_pii"] += 1
    masked = mask_pii(text)
    assert isinstance(masked, str)
    assert not _EMAIL.search(masked), masked


class FakeEngine:
    """A model stand-in: counts ~4 characters a token and always answers 'ok' (the API is under test)."""

    name = "fake"
    n_ctx = 2048

    def count_tokens(self, messages: Any) -> int:
        return sum(len(m["content"]) // 4 + 4 for m in messages)

    def stream(self, messages: Any, max_tokens: int | None = None, stop: Any = ()) -> Iterator[str]:
        return iter(["ok"])


class FakeRetriever:
    """Always finds the returns policy, so every question reaches the model."""

    def retrieve(self, query: str, k: int | None = None, filters: dict[str, str] | None = None) -> list[Any]:
        from kit.chunk import Chunk

        return [
            Chunk(
                text="Returns\nUnused items can be returned within 30 days.",
                source="docs/policies.md",
                title="Returns",
                location="line 1",
            )
        ]


API_KEY = "fuzz-key"


@cache
def api_client() -> Any:
    """The real /v1 app (request validation, guardrails, feedback store) over a fake model and retriever."""
    from fastapi.testclient import TestClient

    from kit.domain import load_domain
    from kit.server.routes import build_api
    from kit.server.settings import Limits
    from kit.services.assistant.admission import Admission
    from kit.services.assistant.chat import ChatService
    from kit.services.assistant.turns import TurnService
    from kit.services.owner.feedback import FeedbackStore
    from kit.services.safety.guardrails import Guardrails

    domain = load_domain(workspace())
    service = ChatService(domain, FakeEngine(), FakeRetriever(), Guardrails(domain.spec))
    store = FeedbackStore(workspace() / "build" / "feedback.sqlite3")
    limits = Limits(rate_per_minute=0)  # thousands of requests from one client: a 429 (tested by itself) would answer
    turns = TurnService(service, store, Admission(limits.max_busy))
    return TestClient(build_api(turns, API_KEY, limits=limits), raise_server_exceptions=True)


def api(body: bytes, authorised: bool = True) -> int:
    """POST /v1/chat/completions with ``body``: 200 with a completion, or a 4xx with a JSON error."""
    COUNTS["api"] += 1
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {API_KEY}"} if authorised else {})}
    resp = api_client().post("/v1/chat/completions", content=body, headers=headers)
    assert resp.status_code == 200 or 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    if resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream"):
        assert resp.text.rstrip().endswith("data: [DONE]"), resp.text[-300:]
        return 200
    payload = resp.json()
    if resp.status_code == 200:
        assert payload["choices"][0]["message"]["content"]
    else:
        assert "error" in payload or "detail" in payload, payload
    if not authorised:  # whatever the body, never an answer without the key
        assert resp.status_code != 200
    return resp.status_code


def api_json(body: Any) -> int:
    """``api`` on a JSON value (what a client library sends)."""
    return api(json.dumps(body).encode())

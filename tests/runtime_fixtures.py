"""Fixtures for the assistant runtime: the real embedded GGUF, indexed domain copies, a real server on a free port.

Registered from conftest.py with ``pytest_plugins``. Answers are kept short (max_tokens) so the real
270M model answers in about a second on two cores.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Read before any test moves HOME: models assemble once per machine, not once per test.
os.environ.setdefault("KIT_CACHE", str(Path.home() / ".cache" / "kit" / "models"))
SHORT = 24  # tokens per answer in tests
# The model the runtime tests run, named: the smallest that follows kit's gemma template (the default may be larger).
TEST_MODEL = "embedded:gemma-3-270m"


def tune_domain(root: Path, **model: Any) -> Path:
    """Rewrite a domain copy's model settings (short answers, the test model unless ``model`` names one, a given
    n_ctx, a server...)."""
    spec_file = root / "domain.yaml"
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    current = spec.get("model", {})
    sampling = {**current.get("sampling", {}), "max_tokens": SHORT, "temperature": 0.0}
    test_model = {"gguf": TEST_MODEL, "chat_template": "gemma"} if current.get("gguf", "embedded") == "embedded" else {}
    spec["model"] = {**current, **test_model, "sampling": sampling, **model}
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return root


def indexed_copy(source: Path, dest: Path, **model: Any) -> Path:
    """A copy of a domain, tuned and indexed."""
    from kit.domain import load_domain
    from kit.services.retrieval.ingest import index_domain

    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("build"))
    tune_domain(dest, **model)
    index_domain(load_domain(dest), progress=False)
    return dest


@pytest.fixture(scope="session")
def engine() -> Any:
    """The embedded Gemma 3 270M in llama.cpp, loaded once."""
    from kit.components.llm import LlamaEngine
    from kit.settings import ModelSettings, Sampling

    settings = ModelSettings(gguf=TEST_MODEL, n_ctx=2048, sampling=Sampling(max_tokens=SHORT, temperature=0.0))
    return LlamaEngine(settings, ROOT)


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The minimal example domain, indexed, with short answers."""
    return indexed_copy(ROOT / "data_templates" / "example", tmp_path_factory.mktemp("rt") / "example")


@pytest.fixture(scope="session")
def example_service(example_dir: Path, engine: Any) -> Any:
    """The example domain's chat service on the shared engine."""
    from kit.domain import load_domain
    from kit.services.assistant.chat import ChatService

    return ChatService.open(load_domain(example_dir), engine=engine)


class PlantedEngine:
    """An engine that 'answers' with fixed pieces, no model: optionally waiting on ``wait`` first (a busy model), and
    raising ``fail`` after the pieces (a model that breaks mid-answer). ``entered`` is set when an answer begins."""

    name = "planted"
    n_ctx = 4096

    def __init__(
        self, pieces: Sequence[str] = ("Within ", "30 ", "days ", "[1]."), wait: threading.Event | None = None,
        fail: Exception | None = None,
    ) -> None:  # fmt: skip
        self.pieces, self.wait, self.fail = list(pieces), wait, fail
        self.entered = threading.Event()

    def count_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        return sum(len(m["content"]) for m in messages) // 4 + 8

    def stream(self, messages: Sequence[dict[str, str]], max_tokens: int | None = None, stop: Sequence[str] = ()
               ) -> Iterator[str]:  # fmt: skip
        self.entered.set()
        if self.wait is not None:
            self.wait.wait(timeout=30)
        yield from self.pieces
        if self.fail is not None:
            raise self.fail


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Wait until GET ``url`` answers 200 from the server ``proc`` runs (a real engine, a chroma server); fail with
    the end of its log when it exits or does not answer in time."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{proc.args} did not answer in {timeout:.0f} s: {log.read_text()[-2000:]}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Ask a server process to stop; kill it when it has not in 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


ENGINE_ALIAS = "gemma-3-270m"  # the model name llama_server serves the test model under
ENGINE_CTX = 2048


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`, the engine extra) on the test
    model with kit's gemma turns (its GGUF has no template), on a free port; its /v1 URL."""
    import sys

    from kit.components.models import named_gguf

    port, log = free_port(), tmp_path_factory.mktemp("llama-server") / "server.log"
    args = ["--model", str(named_gguf(TEST_MODEL)), "--model_alias", ENGINE_ALIAS, "--chat_format", "gemma"]
    args += ["--n_ctx", str(ENGINE_CTX), "--host", "127.0.0.1", "--port", str(port), "--verbose", "False"]
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", *args], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_serving(f"{url}/models", proc, log)
        yield url
    finally:
        stop_process(proc)


@dataclass
class Served:
    url: str
    service: Any
    api_key: str | None


def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free port in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def served(example_service: Any) -> Iterator[Served]:
    """`kit serve`'s app (UI at /, API at /v1) for the example domain on a free port, with an API key."""
    from kit.server.app import build_server

    key = "test-key"
    for url in serve(build_server(example_service, api_key=key)):
        yield Served(url, example_service, key)


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``shipped(name)``: a shipped domain (retail, clinic, travel), copied and indexed once per session."""
    from kit.domain import load_domain

    cache: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in cache:
            dest = indexed_copy(ROOT / "domains" / name, tmp_path_factory.mktemp("shipped") / name)
            cache[name] = load_domain(dest)
        return cache[name]

    return get

"""retrieval.server against a real chromadb server (`chroma run`, the chromadb package's own CLI) on a free port with
its own data folder: index, search and re-index through it; the server stopped mid-request is one clear error, loses
nothing, and kit carries on once it is back."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLE
from runtime_fixtures import ENGINE_ALIAS, free_port, serve, stop_process, tune_domain, wait_serving


class ChromaServer:
    """`chroma run --path DATA --port PORT`, started and stopped by the test."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log, self.port = data, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        chroma = Path(sys.executable).with_name("chroma")
        args = [str(chroma), "run", "--path", str(self.data), "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_serving(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", self.proc, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    folder = tmp_path_factory.mktemp("chroma-server")
    server = ChromaServer(folder / "data", folder / "chroma.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory, chroma: ChromaServer) -> Path:
    """The example domain with retrieval.server pointing at the chroma server (not indexed)."""
    import yaml

    dest = tmp_path_factory.mktemp("chroma-domain") / "example"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build"))
    spec = yaml.safe_load((dest / "domain.yaml").read_text())
    spec["retrieval"]["server"] = {"host": "127.0.0.1", "port": chroma.port}
    (dest / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return tune_domain(dest)


def stored(port: int, domain: Path) -> int:
    """How many chunks the server itself holds for the domain (asked with chromadb's own client)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
    return client.get_collection("kit-example-shop").count()


def fingerprint(folder: Path) -> dict[str, str]:
    """The domain's documents, spec and index manifest by content hash (not the feedback its answers record)."""
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("feedback.sqlite3")]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_index_search_and_reindex_through_the_server(run_kit, domain: Path, chroma: ChromaServer) -> None:
    import json

    done = run_kit("index", str(domain), "-q")
    assert done.code == 0, done.err
    manifest = json.loads((domain / "build" / "manifest.json").read_text())
    assert stored(chroma.port, domain) == len(manifest["chunks"]) > 0
    assert not (domain / "build" / "chroma").exists()  # no local store: the vectors are on the server
    found = run_kit("search", str(domain), "how long do returns take", "--json")
    assert found.code == 0, found.err
    assert "docs/policies.md" in {r["source"] for r in json.loads(found.out)}
    # a changed policy: re-indexed through the server, the old chunk replaced, the new words found
    policies = domain / "docs" / "policies.md"
    policies.write_text(policies.read_text() + "\n\nGift cards never expire and can be used online.\n")
    again = run_kit("index", str(domain), "-q")
    assert again.code == 0, again.err
    manifest = json.loads((domain / "build" / "manifest.json").read_text())
    assert stored(chroma.port, domain) == len(manifest["chunks"])
    gift = json.loads(run_kit("search", str(domain), "do gift cards expire", "--json").out)
    assert "Gift cards never expire" in gift[0]["text"]


def test_the_server_gone_mid_request_is_one_clear_error_and_kit_carries_on_when_it_is_back(
    run_kit, domain: Path, chroma: ChromaServer, engine
) -> None:
    from kit.domain import load_domain
    from kit.errors import KitError
    from kit.server.app import build_server
    from kit.services.assistant.chat import ChatService
    from kit.services.retrieval.retrieve import Retriever

    assert run_kit("index", str(domain), "-q").code == 0
    retriever = Retriever.open(load_domain(domain))  # kept open, as kit serve keeps it
    api = serve(build_server(ChatService.open(load_domain(domain), engine=engine), api_key="k"))
    url = next(api)
    before = fingerprint(domain)
    # frozen, the server accepts the connection and never answers: the search is in flight when it is killed
    assert chroma.proc is not None
    os.kill(chroma.proc.pid, signal.SIGSTOP)
    failed: list[BaseException] = []
    search = threading.Thread(target=lambda: _capture(failed, retriever.retrieve, "how long do returns take"))
    search.start()
    search.join(timeout=1.0)
    chroma.kill()
    search.join(timeout=30)
    assert not search.is_alive() and len(failed) == 1 and isinstance(failed[0], KitError)
    said = str(failed[0])
    assert said.startswith(f"the chromadb server at 127.0.0.1:{chroma.port} does not answer (")
    assert said.endswith(
        " — start it again (`chroma run --path <its folder> --port <port>`) and retry: the documents and the last "
        "complete index are untouched, and kit index resumes where it stopped; or remove retrieval.server from "
        "domain.yaml"
    )
    # while it is down: one line from the CLI, no traceback, nothing written
    for args in (("search", str(domain), "returns"), ("index", str(domain), "-q")):
        down = run_kit(*args)
        assert down.code == 1 and "Traceback" not in down.err
        assert down.err.startswith(f"error: the chromadb server at 127.0.0.1:{chroma.port} does not answer")
    # a customer of the running kit serve gets the API's error, not a broken connection
    asked = ask_api(url)
    assert asked.status_code == 503 and asked.json()["error"]["message"].startswith("the chromadb server at")
    assert fingerprint(domain) == before  # the documents and the last complete index untouched
    # back on the same data: the retriever kit kept open answers again, nothing to re-index
    chroma.start()
    assert retriever.retrieve("how long do returns take")[0].source == "docs/policies.md"
    assert ask_api(url).status_code == 200
    done = run_kit("index", str(domain), "-q")
    assert done.code == 0 and fingerprint(domain) == before
    next(api, None)  # stops kit's server


def ask_api(url: str) -> httpx.Response:
    body = {"model": "example-shop", "messages": [{"role": "user", "content": "How long do returns take?"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}, timeout=120)


def test_kit_ask_through_a_model_server_and_a_chroma_server(
    run_kit, domain: Path, chroma: ChromaServer, llama_server: str, tmp_path: Path
) -> None:
    """The scaled shape as processes: kit, llama-cpp-python's server, chroma run; nothing of either in kit's process."""
    import json

    scaled = Path(shutil.copytree(domain, tmp_path / "scaled"))
    tune_domain(scaled, server={"base_url": llama_server, "model": ENGINE_ALIAS}, fact_lock=False)
    assert run_kit("index", str(scaled), "-q").code == 0  # the same collection: nothing new to embed
    asked = run_kit("ask", str(scaled), "How much is the folding lantern?", "--json")
    assert asked.code == 0, asked.err
    reply = json.loads(asked.out)
    assert reply["model"] == ENGINE_ALIAS and reply["answer"].strip()
    assert "docs/catalogue.csv" in {s["source"] for s in reply["sources"]}
    assert not (scaled / "build" / "chroma").exists()


def _capture(failed: list[BaseException], fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # the thread's outcome, read by the test
        failed.append(exc)

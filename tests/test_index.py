"""The incremental index and hybrid search on a real chromadb and the real MiniLM embeddings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

import kit.services.retrieval.ingest as ingest
from kit.domain import load_domain
from kit.services.retrieval.ingest import index_domain, open_store
from kit.services.retrieval.retrieve import Retriever


def add_policy(domain_dir: Path, name: str, text: str | None) -> None:
    spec = domain_dir / "domain.yaml"
    if text is not None:
        (domain_dir / "docs" / name).write_text(text, encoding="utf-8")
    spec.write_text(
        spec.read_text().replace("    - path: docs/faq.jsonl", f"    - path: docs/faq.jsonl\n    - path: docs/{name}")
    )


def test_reindex_embeds_only_what_changed(example_copy: Path) -> None:
    domain = load_domain(example_copy)
    first = index_domain(domain, progress=False)
    assert (first.files, first.added, first.unchanged, first.skipped) == (3, first.chunks, 0, [])

    again = index_domain(domain, progress=False)
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, first.chunks)

    policies = example_copy / "docs" / "policies.md"
    policies.write_text(policies.read_text().replace("30 days", "45 days"), encoding="utf-8")
    (example_copy / "docs" / "faq.jsonl").unlink()
    changed = index_domain(domain, progress=False)
    assert (changed.updated, changed.removed, changed.added) == (1, 1, 0)
    assert open_store(domain).count() == changed.chunks == first.chunks - 1
    top = Retriever.open(domain).retrieve("how long do I have to return an item", k=1)[0]
    assert "45 days" in top.text and top.source == "docs/policies.md"


def test_interrupted_index_keeps_the_old_one_and_completes(example_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    domain = load_domain(example_copy)
    index_domain(domain, progress=False)
    add_policy(example_copy, "care.md", "\n\n".join(f"# Care {i}\nClean item {i} with water." for i in range(12)))
    domain = load_domain(example_copy)
    calls = {"n": 0}
    from kit.components.vector_store import VectorStore

    original = VectorStore.add

    def add_then_die(self, chunks, vectors) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        original(self, chunks, vectors)

    monkeypatch.setattr(ingest, "EMBED_BATCH", 4)
    monkeypatch.setattr(VectorStore, "add", add_then_die)
    with pytest.raises(KeyboardInterrupt):
        index_domain(domain, progress=False)
    # the previous index still answers, from the previous manifest
    old = Retriever.open(domain)
    assert not any(c.source == "docs/care.md" for c in old.chunks)
    assert old.retrieve("lantern price", k=1)[0].metadata["row_id"] == "EX-LMP-002"

    monkeypatch.setattr(VectorStore, "add", original)
    done = index_domain(domain, progress=False)
    assert done.unchanged == 5 + 4  # the old chunks and the batch stored before the interruption
    assert done.added == 12 - 4
    assert open_store(domain).count() == done.chunks == 5 + 12


def test_kill_during_indexing_then_complete(tmp_path: Path, example_copy: Path) -> None:
    add_policy(
        example_copy, "guide.md", "\n\n".join(f"# Topic {i}\nThe answer to topic {i} is {i * 7}." for i in range(3000))
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "index", str(example_copy)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    seen = b""
    deadline = time.time() + 120
    while b"256/" not in seen and time.time() < deadline:  # killed after the first batch is stored
        seen += proc.stderr.read1(256)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    domain = load_domain(example_copy)
    done = index_domain(domain, progress=False)
    assert done.unchanged >= 256 and done.added + done.unchanged == done.chunks
    assert open_store(domain).count() == done.chunks  # no duplicates
    [hit] = Retriever.open(domain).retrieve("what is the answer to topic 1234", k=1)
    assert "8638" in hit.text


def test_skipped_files_are_reported_and_the_rest_indexed(run_kit, example_copy: Path) -> None:
    docs = example_copy / "docs"
    assert run_kit("index", str(example_copy), "-q").code == 0
    (docs / "notes").mkdir()
    (docs / "notes" / "empty.txt").write_bytes(b"")
    (docs / "notes" / "latin.md").write_bytes("# Caf\xe9".encode("latin-1"))
    (docs / "notes" / "ok.md").write_text("# Opening hours\nWe answer chats 9:00–17:00.", encoding="utf-8")
    add_policy(example_copy, "notes", None)
    result = run_kit("index", str(example_copy), "-q")
    assert result.code == 3
    assert "warning: skipped docs/notes/empty.txt: empty file" in result.err
    assert "warning: skipped docs/notes/latin.md: not UTF-8 text (line 1)" in result.err
    assert "2 skipped" in result.out and "1 added" in result.out and "0 removed" in result.out
    hits = json.loads(run_kit("search", str(example_copy), "when can I chat", "--json").out)
    assert any(h["source"] == "docs/notes/ok.md" for h in hits)
    assert any(
        h["source"] == "docs/catalogue.csv"
        for h in json.loads(run_kit("search", str(example_copy), "mug", "--json").out)
    )


def test_search_before_index_says_what_to_run(run_kit, example_copy: Path) -> None:
    result = run_kit("search", str(example_copy), "returns")
    assert result.code == 1
    assert (
        result.err.strip() == f"error: domain 'example-shop' has no index yet — run: kit index {example_copy.resolve()}"
    )


def test_search_json_and_filters(run_kit, example_copy: Path) -> None:
    run_kit("index", str(example_copy), "-q")
    hits = json.loads(run_kit("search", str(example_copy), "something for the kitchen", "-k", "3", "--json").out)
    assert len(hits) == 3 and {"text", "source", "score"} <= set(hits[0])
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    only = json.loads(run_kit("search", str(example_copy), "camp", "--filter", "category=lighting", "--json").out)
    assert only and all(h["metadata"]["category"] == "lighting" for h in only)
    bad = run_kit("search", str(example_copy), "camp", "--filter", "lighting")
    assert bad.code == 1 and "is not key=value" in bad.err


def test_exact_identifiers_and_prices_are_found_by_keyword(example_copy: Path) -> None:
    domain = load_domain(example_copy)
    index_domain(domain, progress=False)
    retriever = Retriever.open(domain)
    assert retriever.retrieve("ex-lmp-002", k=1)[0].metadata["row_id"] == "EX-LMP-002"
    assert retriever.retrieve("is EX-MUG-001 available?", k=1)[0].metadata["row_id"] == "EX-MUG-001"
    keyword_only = retriever.keyword.search("14.50", 3)
    assert retriever.chunks[keyword_only[0][0]].metadata["row_id"] == "EX-MUG-001"


def test_http_client_mode_by_configuration(example_copy: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    chroma = Path(sys.executable).parent / "chroma"
    server = subprocess.Popen(
        [str(chroma), "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        spec = example_copy / "domain.yaml"
        spec.write_text(
            spec.read_text().replace(
                "retrieval:\n", f"retrieval:\n  server:\n    host: 127.0.0.1\n    port: {port}\n", 1
            )
        )
        domain = load_domain(example_copy)
        report = index_domain(domain, progress=False)
        assert report.added == 5
        assert not (example_copy / "build" / "chroma").exists()
        assert Retriever.open(domain).retrieve("lantern", k=1)[0].metadata["row_id"] == "EX-LMP-002"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_port(port: int) -> None:
    import urllib.request

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("chroma server did not start")


def test_a_file_that_turns_bad_keeps_its_indexed_chunks(run_kit, example_copy: Path) -> None:
    assert run_kit("index", str(example_copy), "-q").code == 0
    policies = example_copy / "docs" / "policies.md"
    policies.write_bytes(policies.read_bytes() + "\n\xe9t\xe9".encode("latin-1"))
    result = run_kit("index", str(example_copy), "-q")
    assert result.code == 3 and "skipped docs/policies.md: not UTF-8 text" in result.err
    assert "0 removed" in result.out
    hits = json.loads(run_kit("search", str(example_copy), "return within 30 days", "--json").out)
    assert hits[0]["source"] == "docs/policies.md"


def test_a_new_users_domain_with_their_own_documents(run_kit, tmp_path: Path) -> None:
    from pdfs import write_pdf

    dest = tmp_path / "bakery"
    assert run_kit("new", str(ROOT / "data_templates" / "example"), str(dest)).code == 0
    docs = dest / "docs"
    (docs / "opening.html").write_text(
        "<html><body><nav>Menu</nav><main><h1>Opening hours</h1><p>We bake from "
        "6:30 every morning except Mondays.</p></main></body></html>",
        encoding="utf-8",
    )
    write_pdf(docs / "allergens.pdf", ["Our sourdough contains wheat and rye.", "Croissants contain butter and egg."])
    spec = dest / "domain.yaml"
    spec.write_text(
        spec.read_text().replace(
            "    - path: docs/faq.jsonl",
            "    - path: docs/faq.jsonl\n    - path: docs/opening.html\n    - path: docs/allergens.pdf",
        )
    )
    assert run_kit("validate", str(dest)).code == 0
    indexed = run_kit("index", str(dest), "-q")
    assert indexed.code == 0 and "indexed 5 files" in indexed.out
    top = json.loads(run_kit("search", str(dest), "when do you open in the morning", "-k", "1", "--json").out)[0]
    assert top["source"] == "docs/opening.html" and "6:30" in top["text"]
    top = json.loads(run_kit("search", str(dest), "do croissants have egg", "-k", "1", "--json").out)[0]
    assert top["source"] == "docs/allergens.pdf" and top["location"] == "page 2"

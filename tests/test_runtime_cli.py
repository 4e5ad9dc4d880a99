"""The runtime's verbs: prepare, ask (--json), serve's start-up errors, chat in the terminal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from runtime_fixtures import ROOT, tune_domain

from kit.model_registry import lookup


def test_prepare_assembles_the_model_and_loads_the_embedder(run_kit) -> None:
    result = run_kit("prepare")
    assert result.code == 0, result.err
    assert lookup("embedded").file in result.out and "embedding model: ready" in result.out  # the default model


def test_ask_json_has_answer_sources_flags_and_timings(run_kit, example_dir: Path) -> None:
    result = run_kit("ask", str(example_dir), "How long do I have to return an item?", "--json")
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert {"answer", "sources", "refused", "handoff", "ttft_s", "tokens_per_s"} <= set(out)
    assert out["answer"].strip() and not out["refused"] and not out["handoff"]
    assert "docs/policies.md" in {s["source"] for s in out["sources"]}


def test_ask_prints_the_answer_then_its_sources(run_kit, example_dir: Path) -> None:
    result = run_kit("ask", str(example_dir), "I want to talk to a real person")
    assert result.code == 0, result.err
    assert "help@example.com" in result.out


def test_ask_before_indexing_says_what_to_run(run_kit, example_copy: Path) -> None:
    result = run_kit("ask", str(example_copy), "How long do returns take?")
    assert result.code == 1
    assert "no index yet" in result.err and "kit index" in result.err


def test_a_corrupt_model_file_fails_at_start_with_one_line(run_kit, example_copy: Path) -> None:
    (example_copy / "broken.gguf").write_bytes(b"\0" * 4096)
    tune_domain(example_copy, gguf="broken.gguf")
    result = run_kit("ask", str(example_copy), "hello")
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "broken.gguf" in lines[0] and "not a GGUF model" in lines[0]


def test_serve_on_a_taken_port_is_one_clear_line(run_kit, example_dir: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_kit("serve", str(example_dir), "--port", str(port))
    assert result.code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.err and "--port" in result.err


def test_serve_help_shows_the_default_bind_and_examples(run_kit) -> None:
    result = run_kit("serve", "--help")
    assert "127.0.0.1" in result.out and "kit serve domains/retail" in result.out


def test_terminal_chat_answers_and_ends_on_an_empty_line(example_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "kit", "chat", str(example_dir), "--terminal"],
        input="I want to talk to a real person\n\n", capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Hi, I'm Sam" in done.stdout and "help@example.com" in done.stdout

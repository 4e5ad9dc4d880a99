"""`kit synth --teacher` against a real local OpenAI-compatible HTTP server answering canned replies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kit.domain import load_domain
from kit.services.synth import SynthOptions, journal_path, synthesize
from kit.services.synth.teacher import TeacherSpec

ROOT = Path(__file__).resolve().parent.parent


class Teacher:
    """Canned teacher: quotes each document's second line; invents a price for the mug."""

    def __init__(self, fail_first: int = 0, block_after: int | None = None) -> None:
        self.fail_first = fail_first
        self.block_after = block_after
        self.release = threading.Event()
        self.asked: list[str] = []  # document titles, one per request answered or attempted
        self.lock = threading.Lock()

    def reply(self, body: dict) -> tuple[int, dict]:
        document = re.search(r"<document>\n(.*?)\n</document>", body["messages"][1]["content"], re.DOTALL).group(1)
        title, fact = document.splitlines()[0], document.splitlines()[1]
        with self.lock:
            self.asked.append(title)
            n = len(self.asked)
        if n <= self.fail_first:
            return 503, {"error": "busy"}
        if self.block_after is not None and n > self.block_after:
            self.release.wait(30)
            return 503, {"error": "released"}
        pairs = [{"intent": "detail", "question": f"What about {title}?", "answer": f"{fact} [1]"}]
        if "EX-MUG-001" in title:
            pairs.append({"intent": "price", "question": "How much is the mug?", "answer": "The mug is $12.99 [1]."})
        content = "```json\n" + json.dumps({"pairs": pairs}) + "\n```"
        return 200, {"choices": [{"message": {"role": "assistant", "content": content}}],
                     "usage": {"prompt_tokens": 100, "completion_tokens": 20}}  # fmt: skip


@pytest.fixture
def serve() -> Iterator:
    servers: list[ThreadingHTTPServer] = []

    def start(teacher: Teacher) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, data = teacher.reply(body)
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"openai:http://127.0.0.1:{server.server_address[1]}/v1#teacher-big"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def options(out: Path, spec: str, **kw) -> SynthOptions:
    return SynthOptions(out=out, teacher=TeacherSpec.parse(spec), val_fraction=0, backoff_s=0.01, progress=False, **kw)


def teacher_records(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return [r for r in rows if r["sources"]]


def test_invented_price_is_dropped_and_reported(example_copy: Path, serve) -> None:
    teacher = Teacher()
    spec = serve(teacher)
    domain = load_domain(example_copy)
    out = example_copy / "data" / "teacher.jsonl"
    report = synthesize(domain, options(out, spec))
    records = teacher_records(out)
    assert len(records) == 5  # one kept per chunk
    assert not any("12.99" in m["content"] for r in records for m in r["messages"])
    assert report.dropped["unsupported fact"] == 1
    assert any("$12.99" in s for s in report.drop_samples)
    assert report.dropped_by_intent["price"] == 1
    assert (report.prompt_tokens, report.completion_tokens) == (500, 100)


def test_a_server_failing_twice_is_retried(example_copy: Path, serve) -> None:
    teacher = Teacher(fail_first=2)
    spec = serve(teacher)
    out = example_copy / "data" / "teacher.jsonl"
    report = synthesize(load_domain(example_copy), options(out, spec, concurrency=1))
    assert len(teacher_records(out)) == 5 and not report.failed_chunks
    assert report.retries == 2 and len(teacher.asked) == 7


def test_a_killed_run_resumes_without_duplicates(example_copy: Path, serve) -> None:
    teacher = Teacher(block_after=2)
    spec = serve(teacher)
    out = example_copy / "data" / "teacher.jsonl"
    cmd = [sys.executable, "-m", "kit", "synth", str(example_copy), "--teacher", spec, "--out", str(out),
           "--concurrency", "1", "--quiet", "--val-fraction", "0"]  # fmt: skip
    journal = journal_path(load_domain(example_copy), options(out, spec))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):  # wait for the first two replies to be journalled (the third request blocks)
            if journal.is_file() and len(journal.read_text().splitlines()) >= 2 and len(teacher.asked) >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the run never got going: {proc.stderr.read1().decode() if proc.poll() is not None else ''}")
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()  # killed before the end
    teacher.release.set()
    done_before = list(teacher.asked[:2])
    teacher.block_after = None
    report = synthesize(load_domain(example_copy), options(out, spec, concurrency=2))
    records = teacher_records(out)
    assert len(records) == 5 and not report.failed_chunks
    assert len({r["id"] for r in records}) == 5
    assert len({r["messages"][0]["content"] for r in records}) == 5
    asked = Counter(teacher.asked)
    assert all(asked[title] == 1 for title in done_before)  # what was written was not asked again
    assert len(journal.read_text().splitlines()) == 5


class Refusing(Teacher):
    def reply(self, body: dict) -> tuple[int, dict]:
        self.asked.append("refused")
        return 401, {"error": "invalid api key"}


def test_bad_teacher_spec_and_refusing_server_are_one_line_errors(example_copy: Path, run_kit, serve) -> None:
    result = run_kit("synth", str(example_copy), "--teacher", "gpt-4")
    assert result.code == 1 and "openai:<base_url>#<model>" in result.err and "Traceback" not in result.err
    refusing = Refusing()
    result = run_kit("synth", str(example_copy), "--teacher", serve(refusing), "--quiet", "--concurrency", "1")
    assert result.code == 1 and "answered 401" in result.err and "KIT_TEACHER_API_KEY" in result.err
    assert len(refusing.asked) <= 2  # not retried (up to two requests per worker are queued at once)

"""`kit serve` facing the public: who may bind where, keys, rate and size limits, "busy, retry", no file leaks.

Most cases run the real FastAPI app and guards over the example domain with a planted engine (no model
load); the file-route and auth-at-start cases use the real server and CLI. Figures: docs/RELIABILITY.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ROOT
from fastapi.testclient import TestClient
from runtime_fixtures import PlantedEngine, Served, serve

from kit.commands.serve import check_auth
from kit.errors import KitError
from kit.server.guards import TokenBuckets
from kit.server.routes import build_api
from kit.server.settings import Limits
from kit.services.assistant.admission import Admission, Busy
from kit.services.assistant.chat import ChatService
from kit.services.assistant.turns import TurnService
from kit.services.owner.feedback import FeedbackStore
from kit.services.safety.pii import mask_pii

USER = [{"role": "user", "content": "How long do I have to return an item?"}]


def planted(example_service: Any, engine: PlantedEngine | None = None) -> ChatService:
    s = example_service
    return ChatService(s.domain, engine or PlantedEngine(), s.retriever, s.guardrails)


def api(example_service: Any, tmp_path: Path, limits: Limits, key: str | None = "k", engine: Any = None) -> Any:
    store = FeedbackStore(tmp_path / "fb.sqlite3")
    turns = TurnService(planted(example_service, engine), store, Admission(limits.max_busy))
    return build_api(turns, api_key=key, limits=limits)


def auth(key: str = "k") -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- where it listens and who may call it -------------------------------------------------------------


def test_serve_binds_loopback_unless_told() -> None:
    from kit.commands.serve import command

    host = next(p for p in command.params if p.name == "host")
    assert host.default == "127.0.0.1"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_beyond_loopback_it_refuses_to_start_without_auth(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIT_ALLOW_NO_AUTH", raising=False)
    with pytest.raises(KitError, match="refusing to serve"):
        check_auth(host, None, None)
    with pytest.raises(KitError, match="UI login"):
        check_auth(host, "key", None)  # an API key alone leaves the UI open
    check_auth(host, "key", ("shop", "pw"))
    monkeypatch.setenv("KIT_ALLOW_NO_AUTH", "1")
    check_auth(host, None, None)  # explicitly allowed
    for loop in ("127.0.0.1", "localhost", "::1"):
        check_auth(loop, None, None)


def test_kit_serve_on_all_interfaces_without_auth_fails_before_loading_anything(run_kit, monkeypatch) -> None:
    for name in ("KIT_ALLOW_NO_AUTH", "KIT_API_KEY", "KIT_UI_USER", "KIT_UI_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    result = run_kit("serve", str(ROOT / "data_templates" / "example"), "--host", "0.0.0.0", "--port", "1")
    assert result.code != 0 and "refusing to serve on 0.0.0.0" in result.err and "Traceback" not in result.err


def test_bad_limit_in_the_environment_names_the_variable() -> None:
    assert Limits.from_env({"KIT_MAX_BUSY": "3", "KIT_RATE_PER_MINUTE": "0"}).max_busy == 3
    with pytest.raises(KitError, match="KIT_MAX_BODY_BYTES"):
        Limits.from_env({"KIT_MAX_BODY_BYTES": "lots"})


def test_api_key_is_checked_in_constant_time_and_any_header_is_a_401(example_service, tmp_path) -> None:
    import inspect

    from kit.server import guards

    assert "hmac.compare_digest" in inspect.getsource(guards.same_secret)
    client = TestClient(api(example_service, tmp_path, Limits()))
    # Header values arrive as latin-1 bytes: non-ASCII ones once made compare_digest raise (a 500).
    for header in (b"Bearer wrong", b"Bearer kk", b"Basic k", "Bearer ké".encode(), b"Bearer \xff\xfe", b""):
        resp = client.get("/v1/models", headers={"Authorization": header})
        assert resp.status_code == 401, (header, resp.status_code)
    assert client.get("/v1/models", headers=auth()).status_code == 200


# --- how much and how often --------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    buckets = TokenBuckets(per_minute=60, burst=3)
    assert [buckets.take("a", now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a", now=100.0) == pytest.approx(1.0)  # one a second
    assert buckets.take("b", now=100.0) == 0.0  # another client has its own bucket
    assert buckets.take("a", now=101.0) == 0.0
    assert TokenBuckets(per_minute=0, burst=1).take("a") == 0.0  # off


def test_rate_limit_per_client_is_a_429_with_retry_after(example_service, tmp_path) -> None:
    client = TestClient(api(example_service, tmp_path, Limits(rate_per_minute=6, rate_burst=2)))
    codes = [client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code for _ in range(3)]
    assert codes == [401, 401, 429]  # wrong keys count too: guessing keys is rate-limited
    limited = client.get("/v1/models")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert client.get("/v1/models", headers=auth()).status_code == 200  # the right key is its own client


def test_oversized_bodies_are_413_and_long_or_many_messages_400(example_service, tmp_path) -> None:
    client = TestClient(api(example_service, tmp_path, Limits(max_body_bytes=2048, max_messages=3,
                                                              max_message_chars=100)))  # fmt: skip
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    resp = client.post("/v1/chat/completions", json=big, headers=auth())
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    resp = client.post("/v1/chat/completions", content=chunks(), headers={**auth(), "content-type": "application/json"})
    assert resp.status_code == 413
    many = {"messages": [{"role": "user", "content": "hi"}] * 4}
    assert (
        "too many messages" in client.post("/v1/chat/completions", json=many, headers=auth()).json()["error"]["message"]
    )
    long = {"messages": [{"role": "user", "content": "z" * 101}]}
    resp = client.post("/v1/chat/completions", json=long, headers=auth())
    assert resp.status_code == 400 and "characters long" in resp.json()["error"]["message"]
    assert client.post("/v1/chat/completions", json={"messages": USER}, headers=auth()).status_code == 200


def test_nan_and_infinity_in_a_body_are_a_400_not_a_500(example_service, tmp_path) -> None:
    client = TestClient(api(example_service, tmp_path, Limits()), raise_server_exceptions=False)
    for body in (b'{"model": Infinity, "messages": []}', b'{"messages": [{"role": "user", "content": NaN}]}'):
        resp = client.post("/v1/chat/completions", content=body, headers={**auth(), "content-type": "application/json"})
        assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


def test_a_saturated_api_says_busy_retry_at_once(example_service, tmp_path) -> None:
    """One answer holds the model; with max_busy=1 the next request gets a 503 with Retry-After, not a wait."""
    release = threading.Event()
    app = api(example_service, tmp_path, Limits(max_busy=1), engine=PlantedEngine(wait=release))
    for url in serve(app):
        body = {"messages": USER, "stream": True}
        with httpx.Client(base_url=url, headers=auth(), timeout=30) as first:
            with first.stream("POST", "/v1/chat/completions", json=body) as holding:
                assert holding.status_code == 200
                busy = httpx.post(f"{url}/v1/chat/completions", json={"messages": USER}, headers=auth(), timeout=5)
                assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
                assert busy.json()["error"]["code"] == "server_busy"
                release.set()
                assert "".join(holding.iter_text()).endswith("data: [DONE]\n\n")
        again = httpx.post(f"{url}/v1/chat/completions", json={"messages": USER}, headers=auth(), timeout=30)
        assert again.status_code == 200  # the place was given back when the stream ended


def test_admission_counts_places() -> None:
    gate = Admission(2)
    gate.enter(), gate.enter()
    with pytest.raises(Busy, match="busy: 2 answers ahead — retry in"):
        gate.enter()
    gate.leave(3.0)
    gate.enter()
    assert gate.retry_after() >= 1


# --- nothing on disk through the network -------------------------------------------------------------


def test_the_ui_serves_no_file_of_the_domain_or_the_system(served: Served) -> None:
    domain = served.service.domain
    FeedbackStore.for_domain(domain.build_dir)  # make sure the database exists
    targets = [domain.root / "domain.yaml", domain.build_dir / "feedback.sqlite3", Path("/etc/passwd"),
               "../../../../etc/passwd", "domain.yaml", "..%2F..%2F..%2Fetc%2Fpasswd"]  # fmt: skip
    for target in targets:
        for prefix in ("/gradio_api/file=", "/file=", "/gradio_api/file/"):
            resp = httpx.get(f"{served.url}{prefix}{target}", timeout=10)
            assert resp.status_code in (400, 403, 404, 405), (prefix, target, resp.status_code)
            assert "root:" not in resp.text and "display_name" not in resp.text and "SQLite" not in resp.text


def test_no_trust_remote_code_anywhere_in_kit() -> None:
    hits = [str(p) for p in (ROOT / "kit").rglob("*.py") if "trust_remote_code" in p.read_text(encoding="utf-8")]
    assert hits == []


def test_a_domain_cannot_index_files_outside_its_folder(example_copy: Path) -> None:
    from kit.domain import load_domain

    spec = example_copy / "domain.yaml"
    spec.write_text(spec.read_text().replace("path: docs/faq.jsonl", "path: ../../../../etc/hostname"))
    with pytest.raises(KitError):
        load_domain(example_copy)


# --- personal data is masked before it is stored ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("write to Jane.Doe+shop@mail.example.co.uk please", "Jane.Doe"),
        ("call me on +44 (20) 7946 0958 after six", "7946"),
        ("my number is 06-12-34-56-78", "34-56"),
        ("card 5500 0000 0000 0004 exp 12/27", "5500"),
        ("IBAN-free but amex 3782-822463-10005", "822463"),
    ],
)
def test_stored_conversations_are_masked(tmp_path: Path, text: str, gone: str) -> None:
    from kit.components.chat_template import ChatMessage
    from kit.services.assistant.reply import Reply

    store = FeedbackStore(tmp_path / "fb.sqlite3")
    reply = Reply(question=text, kind="answer", reason="", sources=[], sent=ChatMessage(role="user", content=text),
                  model="m", text=f"You said: {text}")  # fmt: skip
    store.record("c", reply)
    row = store.turns("c")[0]
    assert gone not in row["question"] and gone not in row["answer"]
    assert mask_pii("order 12, 2 items, $45.50 on 2024-05-01") == "order 12, 2 items, $45.50 on 2024-05-01"

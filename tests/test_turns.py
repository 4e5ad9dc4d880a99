"""One served chat turn for the UI and the API (kit/services/assistant/turns.py) on `kit serve`'s real app on a real
port: the conversation an API client threads by its id, the one admission queue both share, a failure in the middle of
an answer shown and recorded the same way in both, and request ids in the responses and the logs."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from runtime_fixtures import PlantedEngine, Served, serve

from kit.errors import ModelError
from kit.services.assistant.chat import ChatService
from kit.services.owner.feedback import FeedbackStore

QUESTION = "How long do I have to return an item?"
FAILURE = ModelError("the model server stopped answering", "check that it is running")


def post(url: str, body: dict[str, Any], key: str | None = None, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers={**auth, **headers}, timeout=120)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def ui_chat(url: str, question: str) -> list[dict[str, Any]]:
    """A UI turn through Gradio's own client: the chat as the browser shows it afterwards."""
    from gradio_client import Client

    job = Client(url, verbose=False).submit(question, api_name="/chat")
    job.result(timeout=120)
    return job.outputs()[-1][1]


def text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


# --- the real model ------------------------------------------------------------------------------------


def test_an_api_client_threads_its_conversation_by_the_id_it_was_given(served: Served) -> None:
    store = FeedbackStore.for_domain(served.service.domain.build_dir)
    first = post(served.url, {"messages": [user(QUESTION)]}, served.api_key).json()
    conversation = first["kit"]["conversation"]
    assert len(conversation) == 32 and [t["question"] for t in store.turns(conversation)] == [QUESTION]
    assert first["kit"]["turn"] == store.turns(conversation)[0]["id"]
    history = [user(QUESTION), {"role": "assistant", "content": first["choices"][0]["message"]["content"]}]
    body = {"messages": [*history, user("and for sale items?")], "kit": {"conversation": conversation}}
    second = post(served.url, body, served.api_key).json()
    assert second["kit"]["conversation"] == conversation
    assert [t["question"] for t in store.turns(conversation)] == [QUESTION, "and for sale items?"]
    other = post(served.url, {"messages": [user(QUESTION)]}, served.api_key).json()["kit"]["conversation"]
    assert other != conversation  # without an id, a new conversation
    bad = post(served.url, {"messages": [user(QUESTION)], "kit": {"conversation": "../x y"}}, served.api_key)
    assert bad.status_code == 400 and "kit.conversation" in bad.json()["error"]["message"]


def test_request_ids_are_honoured_or_made_returned_and_on_the_turns_log_lines(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    from kit.server.request_ids import RequestIdFilter

    caplog.set_level(logging.INFO, logger="kit")
    caplog.handler.addFilter(RequestIdFilter())
    given = post(served.url, {"messages": [user(QUESTION)]}, served.api_key, **{"X-Request-ID": "shop-42.a"})
    assert given.headers["x-request-id"] == "shop-42.a"
    made = httpx.get(f"{served.url}/v1/models", timeout=10)  # a refusal (401) carries one too
    assert made.status_code == 401 and len(made.headers["x-request-id"]) == 32
    unusable = httpx.get(f"{served.url}/v1/models", headers={"X-Request-ID": "a b\tc"}, timeout=10)
    assert unusable.headers["x-request-id"] != "a b\tc"
    ids = {(r.name, getattr(r, "request_id", None)) for r in caplog.records}
    assert ("kit.services.assistant.turns", "shop-42.a") in ids  # the turn, logged in the route's worker thread
    assert ("kit.server.request_ids", "shop-42.a") in ids and ("kit.server.request_ids", made.headers["x-request-id"])


# --- a planted engine: a model held busy, or breaking mid-answer ----------------------------------------


@dataclass
class Planted:
    url: str
    engine: PlantedEngine
    store: FeedbackStore


@pytest.fixture(scope="module")
def planted(example_service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    """`kit serve`'s whole app (UI and API) over a planted engine, with one place in the admission queue."""
    from kit.server.app import build_server
    from kit.server.settings import Limits

    engine = PlantedEngine()
    s = example_service
    service = ChatService(s.domain, engine, s.retriever, s.guardrails)
    db = tmp_path_factory.mktemp("feedback") / "feedback.sqlite3"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KIT_FEEDBACK_DB", str(db))
        app = build_server(service, limits=Limits(max_busy=1, rate_per_minute=0))
    for url in serve(app):
        yield Planted(url, engine, FeedbackStore(db))


def test_a_ui_turn_in_flight_takes_the_one_place_and_the_api_is_told_busy(planted: Planted) -> None:
    engine = planted.engine
    engine.wait, engine.fail = threading.Event(), None
    engine.entered.clear()
    result: list[list[dict[str, Any]]] = []
    ui = threading.Thread(target=lambda: result.append(ui_chat(planted.url, QUESTION)))
    ui.start()
    try:
        assert engine.entered.wait(60), "the UI turn never reached the model"
        busy = post(planted.url, {"messages": [user(QUESTION)]})
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert busy.json()["error"]["code"] == "server_busy"
    finally:
        engine.wait.set()
        ui.join(timeout=60)
    assert text(result[0][-1]).strip() and "busy" not in text(result[0][-1])
    assert post(planted.url, {"messages": [user(QUESTION)]}).status_code == 200  # the place was given back


def test_an_api_answer_in_flight_makes_a_ui_turn_say_busy(planted: Planted) -> None:
    engine = planted.engine
    engine.wait, engine.fail = threading.Event(), None
    engine.entered.clear()
    body = {"messages": [user(QUESTION)], "stream": True}
    with httpx.Client(base_url=planted.url, timeout=60) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as holding:
            assert holding.status_code == 200 and engine.entered.wait(30)
            chat = ui_chat(planted.url, "What does the folding lantern cost?")
            assert text(chat[-1]).startswith("⚠️ busy: 1 answers ahead — retry in")
            engine.wait.set()
            assert "".join(holding.iter_text()).endswith("data: [DONE]\n\n")
    assert "What does the folding lantern cost?" not in [r["question"] for r in planted.store.turns()]


def test_a_failure_mid_answer_is_shown_and_recorded_the_same_in_the_ui_and_the_api(planted: Planted) -> None:
    planted.engine.wait, planted.engine.fail = None, FAILURE
    question = "Can I return a used tent?"
    shown_in_ui = text(ui_chat(planted.url, question)[-1])
    assert shown_in_ui.endswith(f"⚠️ {FAILURE}")
    body = {"messages": [user(question)], "stream": True}
    with httpx.stream("POST", f"{planted.url}/v1/chat/completions", json=body, timeout=60) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    error = events[-1]["error"]
    assert error == {"message": str(FAILURE), "type": "server_error", "code": "server_error"}
    streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    whole = post(planted.url, {"messages": [user(question)]})
    assert whole.status_code == 503 and whole.json()["error"] == error
    rows = [r for r in planted.store.turns() if r["question"] == question]
    assert [r["kind"] for r in rows] == ["error"] * 3  # UI, streamed API, whole API: each recorded
    assert rows[0]["answer"] == shown_in_ui  # what the customer saw, partial answer and error
    assert rows[1]["answer"] == f"{streamed}\n\n⚠️ {FAILURE}".strip()
    assert rows[1]["answer"] == rows[2]["answer"] == shown_in_ui  # the same turn, the same words, UI or API

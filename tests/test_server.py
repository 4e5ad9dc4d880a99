"""`kit serve`'s app on a real port: the OpenAI API, the Gradio UI through gradio_client, the server engine."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from runtime_fixtures import Served

from kit.components.llm import ServerEngine, build_engine
from kit.services.assistant.chat import ChatService
from kit.services.owner.feedback import FeedbackStore
from kit.settings import ModelSettings, OpenAIServer

QUESTION = "How long do I have to return an item?"


def headers(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.api_key}"}


def post(served: Served, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{served.url}/v1/chat/completions", json=body, headers=headers(served), timeout=120)


def test_models_lists_the_domain_and_the_key_is_required(served: Served) -> None:
    assert httpx.get(f"{served.url}/v1/models", timeout=10).status_code == 401
    listing = httpx.get(f"{served.url}/v1/models", headers=headers(served), timeout=10).json()
    assert [m["id"] for m in listing["data"]] == ["example-shop"]


def test_non_streamed_completion_has_the_answer_and_its_sources(served: Served) -> None:
    body = post(served, {"model": "example-shop", "messages": [{"role": "user", "content": QUESTION}]}).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].strip()
    assert "docs/policies.md" in {s["source"] for s in body["sources"]}
    assert body["kit"]["kind"] == "answer"
    usage = body["usage"]  # the prompt holds the system prompt and the retrieved documents: hundreds of tokens
    assert usage["prompt_tokens"] > 200 and usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streamed_completion_sends_deltas_then_sources_then_done(served: Served) -> None:
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, headers=headers(served),
                      timeout=120) as resp:  # fmt: skip
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len(chunks) >= 4 and text.strip()
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["sources"]
    assert chunks[-1]["usage"]["prompt_tokens"] > 200


def test_guardrails_apply_to_the_api(served: Served) -> None:
    messages = [{"role": "user", "content": "I want a real person"}]
    body = post(served, {"model": "x", "messages": messages}).json()
    assert body["kit"]["handoff"] and "help@example.com" in body["choices"][0]["message"]["content"]


def test_over_long_and_malformed_requests_get_clear_400s(served: Served) -> None:
    long = post(served, {"model": "x", "messages": [{"role": "user", "content": "Is the lantern waterproof? " * 900}]})
    assert long.status_code == 400
    assert long.json()["error"]["code"] == "context_length_exceeded"
    assert "longer than the model's context" in long.json()["error"]["message"]
    bad = post(served, {"model": "x", "messages": [{"role": "assistant", "content": "hi"}]})
    assert bad.status_code == 400 and "last message" in bad.json()["error"]["message"]


def test_the_official_openai_client_streams_and_not(served: Served) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=served.api_key)
    assert [m.id for m in client.models.list()] == ["example-shop"]
    messages = [{"role": "user", "content": QUESTION}]
    done = client.chat.completions.create(model="example-shop", messages=messages)
    assert done.choices[0].message.content
    assert done.model_extra and done.model_extra["sources"]
    assert done.usage and done.usage.prompt_tokens > 200
    stream = client.chat.completions.create(model="example-shop", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()


def test_server_engine_answers_through_an_openai_compatible_server(served: Served, monkeypatch) -> None:
    monkeypatch.setenv("KIT_TEST_KEY", served.api_key or "")
    settings = ModelSettings(server=OpenAIServer(base_url=f"{served.url}/v1", model="example-shop",
                                                 api_key_env="KIT_TEST_KEY"))  # fmt: skip
    engine = build_engine(settings)
    assert isinstance(engine, ServerEngine)
    assert "".join(engine.stream([{"role": "user", "content": QUESTION}], max_tokens=8)).strip()
    # The same retrieval, guardrails and chat service, with the model behind HTTP.
    local = served.service
    remote = ChatService(local.domain, engine, local.retriever, local.guardrails)
    reply = remote.ask("What does the folding lantern cost?")
    assert reply.kind == "answer" and reply.model == "example-shop"
    assert reply.finish().strip() and "docs/catalogue.csv" in {s.source for s in reply.sources}
    assert remote.ask("I want a real person").kind == "handoff"


def text(message: dict[str, Any]) -> str:
    """A chat message's text (Gradio 6 sends content as a list of parts)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def ask_ui(url: str, question: str) -> tuple[list[Any], str]:
    from gradio_client import Client

    job = Client(url, verbose=False).submit(question, api_name="/chat")
    updates = list(job)
    final = job.outputs()[-1]
    assert len(updates) >= 1
    return final[1], final[2]  # chat, sources markdown


def test_gradio_ui_streams_an_answer_with_its_sources_and_stores_it(served: Served) -> None:
    chat, sources = ask_ui(served.url, QUESTION)
    assert text(chat[-2]) == QUESTION and chat[-1]["role"] == "assistant" and text(chat[-1]).strip()
    assert "docs/policies.md" in sources
    rows = FeedbackStore.for_domain(served.service.domain.build_dir).turns()
    assert any(r["question"] == QUESTION for r in rows)
    page = httpx.get(served.url + "/", timeout=30).text
    assert "Example Shop assistant" in page


def test_ten_concurrent_ui_sessions_get_their_own_answers(served: Served) -> None:
    questions = [f"Does the folding lantern come in size {n}?" for n in range(7)]
    questions += ["I want a real person", "What is the capital of France?", "my card is 4111 1111 1111 1111"]
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda q: ask_ui(served.url, q), questions))
    for question, (chat, _) in zip(questions, results, strict=True):
        assert [text(m) for m in chat if m["role"] == "user"] == [question]  # no mixed-up sessions
        assert text(chat[-1]).strip()


def test_thumbs_are_stored_against_the_answer(served: Served) -> None:
    import gradio as gr

    from kit.services.assistant.admission import Admission
    from kit.services.assistant.turns import TurnService
    from kit.ui.app import ChatUI

    store = FeedbackStore.for_domain(served.service.domain.build_dir)
    ui = ChatUI(TurnService(served.service, store, Admission(1)))
    updates = list(ui.respond(QUESTION, ui.greeting(), [], "conv-like", {}))
    turns = updates[-1][-1]
    ui.like(turns, gr.LikeData(None, {"index": 2, "value": "x", "liked": False}))
    assert store.turns("conv-like")[0]["rating"] == -1
    assert ui.new_chat()[0] == ui.greeting()


def test_the_ui_keeps_at_most_ui_sessions_in_memory_and_the_newest_still_answers(example_service: Any) -> None:
    """Gradio would keep 10,000 sessions' state; Limits.ui_sessions bounds it (the longest idle goes first)."""
    from gradio.routes import App
    from runtime_fixtures import serve

    from kit.server.app import build_server
    from kit.server.settings import Limits

    app = build_server(example_service, limits=Limits(ui_sessions=3, rate_per_minute=0))
    gradio_app = next(route.app for route in app.routes if isinstance(getattr(route, "app", None), App))
    for url in serve(app):
        for n in range(6):
            chat, _ = ask_ui(url, f"I want a real person ({n})")  # a hand-off: no model call
            assert [text(m) for m in chat if m["role"] == "user"] == [f"I want a real person ({n})"]
        assert 1 <= len(gradio_app.state_holder.session_data) <= 3


def test_the_idle_ui_queue_checks_for_work_every_50_ms_not_every_1_ms(example_service: Any, monkeypatch) -> None:
    """Gradio's queue polls (1 ms for events, 10 ms for progress): 2-5% of a core with nobody there."""
    import asyncio
    import threading
    import types

    import gradio.queueing
    from gradio.routes import App

    from kit.server.app import build_server
    from kit.server.settings import Limits
    from kit.ui.app import QUEUE_POLL_S

    app = build_server(example_service, limits=Limits(queue_size=5))
    queue = next(r.app for r in app.routes if isinstance(getattr(r, "app", None), App)).get_blocks()._queue
    assert queue.max_size == 5
    naps: list[float] = []
    here = threading.get_ident()
    sleep = asyncio.sleep

    async def nap(seconds: float) -> None:  # notes the wait, then lets the other loop run
        if threading.get_ident() != here:  # another test's server still polling in its own thread
            await sleep(seconds)
            return
        naps.append(seconds)
        queue.stopped = len(naps) >= 20
        await asyncio.sleep(0)

    async def idle() -> None:  # the queue's two loops, as Queue.start() runs them, with nothing queued
        queue.active_jobs = [None] * queue.max_thread_count
        await asyncio.gather(queue.start_processing(), queue.start_progress_updates())

    monkeypatch.setattr(gradio.queueing, "asyncio", types.SimpleNamespace(**{**vars(asyncio), "sleep": nap}))
    asyncio.run(idle())
    assert len(naps) >= 20 and sorted(set(naps)) == sorted(QUEUE_POLL_S.values())

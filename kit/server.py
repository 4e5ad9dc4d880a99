"""One server: the chat UI at ``/`` and an OpenAI-compatible API at ``/v1``, both over the same chat service.

``POST /v1/chat/completions`` answers the last user message with retrieval and guardrails (the
domain's own system prompt and rules apply; a client's system messages are ignored), streamed or
not; the answer's sources come in an extra ``sources`` field. ``GET /v1/models`` lists the domain.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kit.components.chat_template import ChatMessage
from kit.components.llm import ContextOverflow
from kit.errors import KitError
from kit.services.chat import ChatService, Reply, reply_json
from kit.services.feedback import FeedbackStore, new_conversation

API_KEY_ENV = "KIT_API_KEY"
FEEDBACK_DB_ENV = "KIT_FEEDBACK_DB"  # where feedback goes instead of <domain>/build (a container's volume)


class Message(BaseModel):
    """An OpenAI chat message (text content only)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"] = Field(description="Who speaks.")
    content: str | list[dict[str, Any]] | None = Field(default=None, description="Text, or text parts.")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class CompletionRequest(BaseModel):
    """The fields of OpenAI's chat completion request that kit uses; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(default="", description="Model id; any value selects this server's domain.")
    messages: list[Message] = Field(min_length=1, description="The conversation, ending with the user.")
    stream: bool = Field(default=False, description="Stream server-sent events.")


def api_error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


def split_conversation(messages: list[Message]) -> tuple[str, list[ChatMessage]]:
    """(question, history): the last user message, and the user/assistant turns before it."""
    turns = [ChatMessage(role=m.role, content=m.text()) for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise ValueError("the last message must be a non-empty user message")
    return turns[-1]["content"], turns[:-1]


def completion_body(reply: Reply, model: str, cid: str) -> dict[str, Any]:
    """A finished reply as an OpenAI ``chat.completion`` object, plus ``sources`` and ``kit``."""
    info = reply_json(reply)
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": reply.n_pieces, "total_tokens": reply.n_pieces},
        "sources": info["sources"], "kit": {k: info[k] for k in ("kind", "refused", "handoff", "rule", "cited")},
    }  # fmt: skip


def stream_events(reply: Reply, model: str, cid: str, store: FeedbackStore) -> Iterator[str]:
    """Server-sent events: content deltas, then a final chunk with sources, then [DONE]."""
    head = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield f"data: {json.dumps({**head, 'choices': [first]})}\n\n"
    try:
        for piece in reply:
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            yield f"data: {json.dumps({**head, 'choices': [delta]})}\n\n"
    except KitError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': 'server_error'}})}\n\n"
        return
    store.record(new_conversation(), reply)
    last = {"index": 0, "delta": {}, "finish_reason": "stop"}
    body = completion_body(reply, model, cid)
    yield f"data: {json.dumps({**head, 'choices': [last], 'sources': body['sources'], 'kit': body['kit']})}\n\n"
    yield "data: [DONE]\n\n"


def build_api(service: ChatService, store: FeedbackStore, api_key: str | None = None) -> FastAPI:
    """The FastAPI app with the ``/v1`` routes (the UI is mounted on it by ``build_server``)."""
    app = FastAPI(title=f"kit: {service.domain.spec.display_name}")
    model_id = service.domain.name

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return api_key is None or secrets.compare_digest(given, api_key)

    @app.get("/v1/models")
    def models(request: Request) -> Any:
        if not authorised(request):
            return api_error(401, "invalid or missing API key", "invalid_request_error", "invalid_api_key")
        entry = {"id": model_id, "object": "model", "created": 0, "owned_by": "kit", "engine": service.engine.name}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions")
    def chat_completions(body: CompletionRequest, request: Request) -> Any:
        if not authorised(request):
            return api_error(401, "invalid or missing API key", "invalid_request_error", "invalid_api_key")
        try:
            question, history = split_conversation(body.messages)
            reply = service.ask(question, history)
        except ValueError as exc:
            return api_error(400, str(exc), "invalid_request_error")
        except ContextOverflow as exc:
            return api_error(400, str(exc), "invalid_request_error", "context_length_exceeded")
        except KitError as exc:
            return api_error(503, str(exc), "server_error")
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            return StreamingResponse(stream_events(reply, model_id, cid, store), media_type="text/event-stream")
        reply.finish()
        store.record(new_conversation(), reply)
        return completion_body(reply, model_id, cid)

    return app


def build_server(service: ChatService, api_key: str | None = None, login: tuple[str, str] | None = None) -> FastAPI:
    """API at /v1 and the Gradio UI at /, on one FastAPI app; ``login`` puts a (user, password) form before the UI."""
    import gradio as gr

    from kit.ui.app import build_app, launch_kwargs

    db = os.environ.get(FEEDBACK_DB_ENV)
    store = FeedbackStore(Path(db)) if db else FeedbackStore.for_domain(service.domain.build_dir)
    app = build_api(service, store, api_key)
    ui = build_app(service, store)
    return gr.mount_gradio_app(app, ui, path="/", auth=login, **launch_kwargs(service))

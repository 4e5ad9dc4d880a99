"""OpenAI's chat completion wire format: the request kit reads, the completion and the server-sent events it writes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kit.components.chat_template import ChatMessage
from kit.errors import KitError
from kit.services.feedback import FeedbackStore, new_conversation
from kit.services.reply import Reply, reply_json


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
        "usage": usage(reply),
        "sources": info["sources"],
        "kit": {k: info[k] for k in ("kind", "refused", "handoff", "rule", "cited", "withheld", "fallback", "checks")},
    }  # fmt: skip


def usage(reply: Reply) -> dict[str, int]:
    """OpenAI's token counts; completion tokens are the streamed pieces (one token each from llama.cpp)."""
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.tokens,
        "total_tokens": reply.prompt_tokens + reply.tokens,
    }


def stream_events(reply: Reply, model: str, cid: str, store: FeedbackStore, done: Callable[[], None]) -> Iterator[str]:
    """Server-sent events: content deltas, then a final chunk with sources, then [DONE]; ``done`` runs at the end,
    also when the client goes away."""
    try:
        yield from _events(reply, model, cid, store)
    finally:
        done()


def _events(reply: Reply, model: str, cid: str, store: FeedbackStore) -> Iterator[str]:
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
    extra = {"sources": body["sources"], "kit": body["kit"], "usage": body["usage"]}
    yield f"data: {json.dumps({**head, 'choices': [last], **extra})}\n\n"
    yield "data: [DONE]\n\n"

"""OpenAI's chat completion wire format: the request kit reads, the completion and the server-sent events it writes,
and a failed turn as OpenAI's error (one mapping, before the answer or in the middle of a stream)."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from kit.components.chat_template import ChatMessage
from kit.server.settings import Limits
from kit.services.assistant.reply import reply_json
from kit.services.assistant.turns import Turn, TurnError

CONVERSATION_ID = r"^[A-Za-z0-9_.:-]+$"
# A failed turn's code -> (HTTP status, OpenAI's error type).
ERRORS = {
    "context_length_exceeded": (400, "invalid_request_error"),
    "server_busy": (503, "server_busy"),
    "server_error": (503, "server_error"),
}


class Message(BaseModel):
    """An OpenAI chat message (text content only)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"] = Field(description="Who speaks.")
    content: str | list[dict[str, Any]] | None = Field(default=None, description="Text, or text parts.")

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class KitOptions(BaseModel):
    """kit's own request fields, under ``kit`` (with OpenAI's client: ``extra_body={"kit": {...}}``)."""

    model_config = ConfigDict(extra="forbid")
    conversation: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=CONVERSATION_ID,
        description="Thread this request into a conversation: the id an earlier answer gave in kit.conversation. "
        "Without it a new conversation starts.",
    )  # fmt: skip


class CompletionRequest(BaseModel):
    """The fields of OpenAI's chat completion request that kit uses; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(
        default="",
        description="The domain to answer as (its name, as /v1/models lists it); a one-domain server takes any value.",
    )
    messages: list[Message] = Field(min_length=1, description="The conversation, ending with the user.")
    stream: bool = Field(default=False, description="Stream server-sent events.")
    kit: KitOptions = Field(default_factory=KitOptions, description="kit's own options (the conversation id).")


def api_error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    """An error in OpenAI's shape."""
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


def turn_error_body(error: TurnError) -> dict[str, Any]:
    """A failed turn as OpenAI's error object."""
    return {"error": {"message": error.message, "type": ERRORS[error.code][1], "code": error.code}}


def turn_error_response(error: TurnError) -> JSONResponse:
    """A failed turn as an HTTP error: its status, and Retry-After when waiting helps."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return JSONResponse(turn_error_body(error), status_code=ERRORS[error.code][0], headers=headers)


def size_problem(messages: list[Message], limits: Limits) -> str | None:
    """What makes a request's messages too many or too long for ``limits``; None when they fit."""
    if len(messages) > limits.max_messages:
        return f"too many messages: {len(messages)}, the limit is {limits.max_messages}"
    longest = max(len(m.text()) for m in messages)
    if longest > limits.max_message_chars:
        return f"a message is {longest} characters long, the limit is {limits.max_message_chars}"
    return None


def read_turn(body: CompletionRequest, limits: Limits) -> tuple[str, list[ChatMessage]] | JSONResponse:
    """(question, history) of a request, or the 400 that says why it cannot be answered (too big, no question)."""
    too_big = size_problem(body.messages, limits)
    if too_big:
        return api_error(400, too_big, "invalid_request_error", "request_too_large")
    try:
        return split_conversation(body.messages)
    except ValueError as exc:
        return api_error(400, str(exc), "invalid_request_error")


def split_conversation(messages: list[Message]) -> tuple[str, list[ChatMessage]]:
    """(question, history): the last user message, and the user/assistant turns before it."""
    turns = [ChatMessage(role=m.role, content=m.text()) for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise ValueError("the last message must be a non-empty user message")
    return turns[-1]["content"], turns[:-1]


def completion_body(turn: Turn, model: str, cid: str) -> dict[str, Any]:
    """A finished turn as an OpenAI ``chat.completion`` object, plus ``sources`` and ``kit`` (with the conversation
    id to send back to thread the next request)."""
    assert turn.reply is not None
    reply = turn.reply
    info = reply_json(reply)
    kit = {
        k: info[k]
        for k in ("kind", "refused", "handoff", "lead_form", "rule", "cited", "withheld", "fallback", "checks")
    }
    return {
        "id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,  # completion tokens: the model's tokens, before the guards
            "completion_tokens": reply.tokens,
            "total_tokens": reply.prompt_tokens + reply.tokens,
        },
        "sources": info["sources"],
        "kit": {**kit, "conversation": turn.conversation, "turn": turn.turn_id},
    }  # fmt: skip


def stream_events(turn: Turn, model: str, cid: str) -> Iterator[str]:
    """Server-sent events: content deltas, then a final chunk with sources, then [DONE]; a turn that fails in the
    middle ends with an error event instead. The turn gives its place back when the stream ends or the client goes."""
    head = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield f"data: {json.dumps({**head, 'choices': [first]})}\n\n"
    pieces = iter(turn)
    try:
        for piece in pieces:
            delta = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            yield f"data: {json.dumps({**head, 'choices': [delta]})}\n\n"
    finally:
        if isinstance(pieces, Generator):
            pieces.close()
    if turn.error is not None:
        yield f"data: {json.dumps(turn_error_body(turn.error))}\n\n"
        return
    last = {"index": 0, "delta": {}, "finish_reason": "stop"}
    body = completion_body(turn, model, cid)
    extra = {"sources": body["sources"], "kit": body["kit"], "usage": body["usage"]}
    yield f"data: {json.dumps({**head, 'choices': [last], **extra})}\n\n"
    yield "data: [DONE]\n\n"

"""One server: the chat UI at ``/`` and an OpenAI-compatible API at ``/v1``, both over the same chat service.

``POST /v1/chat/completions`` answers the last user message with retrieval and guardrails (the
domain's own system prompt and rules apply; a client's system messages are ignored), streamed or
not; the answer's sources come in an extra ``sources`` field. ``GET /v1/models`` lists the domain.

Facing the public, every request passes two guards before any route (``Limits``, set from the
environment): a body-size limit (413) and a token bucket per client (429 with Retry-After). The model
answers one request at a time, so answers in progress or waiting are counted too: beyond
``max_busy`` the API says "busy, retry" at once (503 with Retry-After) instead of letting requests
pile up into timeouts; the UI's queue does the same with its own bound (Gradio's 503 "queue full").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kit.components.chat_template import ChatMessage
from kit.components.llm import ContextOverflow
from kit.errors import KitError
from kit.services.chat import ChatService
from kit.services.feedback import FeedbackStore, new_conversation
from kit.services.reply import Reply, reply_json

API_KEY_ENV = "KIT_API_KEY"
FEEDBACK_DB_ENV = "KIT_FEEDBACK_DB"  # where feedback goes instead of <domain>/build (a container's volume)
LIMITS_ENV_PREFIX = "KIT_"  # Limits.max_busy is set by KIT_MAX_BUSY, and so on

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Limits(BaseModel):
    """What one server accepts. Each field can be set from the environment: KIT_<FIELD>, e.g. KIT_MAX_BUSY=4."""

    model_config = ConfigDict(extra="forbid")
    max_body_bytes: int = Field(
        default=256_000,
        ge=1024,
        description="Largest request body (an API call, a UI event or upload); larger is a 413.",
    )
    max_messages: int = Field(default=64, ge=1, description="Most messages in one chat completion request.")
    max_message_chars: int = Field(
        default=32_000, ge=1, description="Longest message in characters (the model's context bounds it further)."
    )
    rate_per_minute: float = Field(
        default=60,
        ge=0,
        description="Requests a minute each client (its API key, else its IP address) may make; 0: off.",
    )
    rate_burst: int = Field(default=60, ge=1, description="Requests a client may make at once before the rate applies.")
    max_busy: int = Field(
        default=8, ge=1, description="API answers running or waiting for the model; beyond it a 503 with Retry-After."
    )
    queue_size: int = Field(default=64, ge=1, description="UI requests waiting in Gradio's queue; beyond it a 503.")
    ui_sessions: int = Field(
        default=1000,
        ge=1,
        description="UI sessions whose state (history, ~35 kB each) is kept in memory; the longest idle is dropped.",
    )

    @classmethod
    def from_env(cls, environ: MutableMapping[str, str] | None = None) -> Limits:
        """The defaults, overridden by KIT_<FIELD> variables; a bad value is a KitError naming the variable."""
        env = os.environ if environ is None else environ
        given = {name: env[LIMITS_ENV_PREFIX + name.upper()] for name in cls.model_fields
                 if env.get(LIMITS_ENV_PREFIX + name.upper(), "").strip()}  # fmt: skip
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            first = exc.errors()[0]
            var = LIMITS_ENV_PREFIX + str(first["loc"][0]).upper()
            raise KitError(
                f"{var}={given.get(str(first['loc'][0]))!r}: {first['msg']}", f"fix or unset {var}"
            ) from None


class TokenBuckets:
    """A token bucket per client: ``burst`` requests at once, refilled at ``per_minute``; thread-safe."""

    def __init__(self, per_minute: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self.lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """0 when the request may go ahead; otherwise the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self.lock:
            tokens, when = self.buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            if tokens >= 1:
                self.buckets[client] = (tokens - 1, now)
                self._prune(now)
                return 0.0
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Forget clients whose buckets have refilled, so a flood of addresses cannot grow memory without end."""
        if len(self.buckets) > self.max_clients:
            full = [c for c, (t, w) in self.buckets.items() if t + (now - w) * self.rate >= self.burst]
            for client in full:
                del self.buckets[client]


class BusyGate:
    """Counts API answers running or waiting for the model; refuses more than ``capacity`` at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.busy = 0
        self.seconds = 1.0  # a moving average of how long one answer holds its place
        self.lock = threading.Lock()

    def enter(self) -> bool:
        with self.lock:
            if self.busy >= self.capacity:
                return False
            self.busy += 1
            return True

    def leave(self, seconds: float) -> None:
        with self.lock:
            self.busy -= 1
            self.seconds = 0.8 * self.seconds + 0.2 * seconds

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the answers ahead, one at a time."""
        with self.lock:
            return max(1, math.ceil(self.seconds * max(1, self.busy) / 2))


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes ``limit`` bytes."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        more = message.get("more_body", False)
    return b"".join(chunks)


def replay(body: bytes) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits for the client to go (as ASGI servers do)."""
    sent = False

    async def receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def add_retry_after(send: Send) -> Send:
    """``send`` that adds Retry-After to a 503 without one (Gradio's "queue full")."""

    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] == 503:
            names = {k.lower() for k, _ in message.get("headers", [])}
            if b"retry-after" not in names:
                message = {**message, "headers": [*message.get("headers", []), (b"retry-after", b"5")]}
        await send(message)

    return wrapped


class Guard:
    """ASGI middleware in front of the API and the UI: body size, then the client's rate; adds Retry-After to 503s."""

    def __init__(self, app: ASGIApp, limits: Limits, api_key: str | None) -> None:
        self.app = app
        self.limits = limits
        self.api_key = api_key
        self.buckets = TokenBuckets(limits.rate_per_minute, limits.rate_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = self.limits.max_body_bytes
        too_large = error_body(f"request body larger than {limit} bytes", "invalid_request_error", "request_too_large")
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await send_json(send, 413, too_large)
            return
        if self.counted(scope):
            wait = self.buckets.take(self.client(scope, headers))
            if wait:
                seconds = math.ceil(wait)
                message = f"too many requests from this client: retry in {seconds} s"
                body = error_body(message, "rate_limit_error", "rate_limit_exceeded")
                await send_json(send, 429, body, {"retry-after": str(seconds)})
                return
        if not length.isdigit() and scope.get("method") in ("POST", "PUT", "PATCH"):
            # A body without a length (chunked) is read here, up to the limit, before any route sees it.
            body = await read_body(receive, limit)
            if body is None:
                await send_json(send, 413, too_large)
                return
            receive = replay(body)
        await self.app(scope, receive, add_retry_after(send))

    @staticmethod
    def counted(scope: Scope) -> bool:
        """API calls, and every POST (UI events, uploads, the login form); not the UI's pages and assets."""
        return str(scope.get("path", "")).startswith("/v1/") or scope.get("method") == "POST"

    def client(self, scope: Scope, headers: dict[str, str]) -> str:
        """The right API key is one client wherever it comes from; anyone else is their IP address."""
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.api_key and given and same_secret(given, self.api_key):
            return "key:" + hashlib.sha256(given.encode()).hexdigest()[:16]
        peer = scope.get("client") or ("unknown", 0)
        return f"ip:{peer[0]}"


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, on bytes: any header value, ASCII or not, compares without an exception."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


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


def build_api(
    service: ChatService, store: FeedbackStore, api_key: str | None = None, limits: Limits | None = None
) -> FastAPI:
    """The FastAPI app with the ``/v1`` routes and the guards (the UI is mounted on it by ``build_server``)."""
    limits = limits or Limits()
    app = FastAPI(title=f"kit: {service.domain.spec.display_name}")
    app.add_middleware(Guard, limits=limits, api_key=api_key)
    model_id = service.domain.name
    gate = BusyGate(limits.max_busy)

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return api_key is None or same_secret(given, api_key)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 echoes the input, which may hold NaN or Infinity (Python's JSON reader accepts
        # them) and then cannot be written as JSON: a 500. Say what is wrong without echoing it.
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg', '')}" for e in exc.errors()
        ]
        return api_error(400, "invalid request: " + "; ".join(problems[:5]), "invalid_request_error")

    def check_size(messages: list[Message]) -> str | None:
        if len(messages) > limits.max_messages:
            return f"too many messages: {len(messages)}, the limit is {limits.max_messages}"
        longest = max(len(m.text()) for m in messages)
        if longest > limits.max_message_chars:
            return f"a message is {longest} characters long, the limit is {limits.max_message_chars}"
        return None

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
        too_big = check_size(body.messages)
        if too_big:
            return api_error(400, too_big, "invalid_request_error", "request_too_large")
        if not gate.enter():
            wait = gate.retry_after()
            response = api_error(503, f"busy: {limits.max_busy} answers ahead; retry in {wait} s", "server_busy",
                                 "server_busy")  # fmt: skip
            response.headers["Retry-After"] = str(wait)
            return response
        started, streaming = time.monotonic(), False
        try:
            question, history = split_conversation(body.messages)
            reply = service.ask(question, history)
            cid = f"chatcmpl-{uuid.uuid4().hex}"
            if body.stream:
                streaming = True
                events = stream_events(reply, model_id, cid, store, lambda: gate.leave(time.monotonic() - started))
                return StreamingResponse(events, media_type="text/event-stream")
            reply.finish()
            store.record(new_conversation(), reply)
            return completion_body(reply, model_id, cid)
        except ValueError as exc:
            return api_error(400, str(exc), "invalid_request_error")
        except ContextOverflow as exc:
            return api_error(400, str(exc), "invalid_request_error", "context_length_exceeded")
        except KitError as exc:
            return api_error(503, str(exc), "server_error")
        finally:
            if not streaming:
                gate.leave(time.monotonic() - started)

    return app


def build_server(
    service: ChatService,
    api_key: str | None = None,
    login: tuple[str, str] | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """API at /v1 and the Gradio UI at /, on one FastAPI app; ``login`` puts a (user, password) form before the UI."""
    import gradio as gr

    from kit.ui.app import build_app, launch_kwargs

    limits = limits or Limits()
    db = os.environ.get(FEEDBACK_DB_ENV)
    privacy = service.domain.spec.privacy
    store = FeedbackStore(Path(db), privacy) if db else FeedbackStore.for_domain(service.domain.build_dir, privacy)
    store.purge_daily()  # the store purged expired turns when it opened; then once a day
    app = build_api(service, store, api_key, limits)
    ui = build_app(service, store, queue_size=limits.queue_size)
    ui.state_session_capacity = limits.ui_sessions  # Gradio keeps 10,000 sessions otherwise: memory grows with visits
    return gr.mount_gradio_app(
        app, ui, path="/", auth=login, max_file_size=limits.max_body_bytes, **launch_kwargs(service)
    )

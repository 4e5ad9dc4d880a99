"""The guards every request passes before any route, as ASGI middleware: a body-size limit (413) and a token bucket
per client (429 with Retry-After); a 503 without Retry-After (Gradio's "queue full") gets one."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kit.server.settings import Limits

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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


def request_headers(scope: Scope) -> dict[str, str]:
    """An ASGI request's headers by lower-case name."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


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
        headers = request_headers(scope)
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

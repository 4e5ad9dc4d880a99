"""Request ids: every HTTP request gets one (the client's ``X-Request-ID`` when it sends a usable one, else a new
one), returned in the response's ``X-Request-ID``, logged with the request's outcome and, through
``RequestIdFilter``, on every log line written while the request is served (threads the request runs in included)."""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from kit.server.guards import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

HEADER = "x-request-id"
USABLE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # what is safe to log and echo; anything else is replaced
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("kit_request_id", default="-")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id when it is usable, else a new one."""
    given = next((v.decode("latin-1") for k, v in headers if k.lower() == HEADER.encode()), "")
    return given if USABLE.fullmatch(given) else uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: sets the request id for the request's logs, returns it, logs each request's outcome."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope.get("headers", []))
        token = REQUEST_ID.set(rid)
        started, status = time.monotonic(), 0

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.monotonic() - started
            logger.info("%s %s -> %d in %.3f s", scope.get("method", ""), scope.get("path", ""), status, seconds)
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (the current request's, "-" outside one) to each record, for ``LOG_FORMAT``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def log_request_ids() -> None:
    """Put request ids on the log lines of every handler the root logger has (the CLI's stderr handler)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter(LOG_FORMAT))

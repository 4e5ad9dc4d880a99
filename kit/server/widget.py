"""The website widget's server side: ``GET /widget.js`` (the script, with the domain's name, greeting and colours),
``POST /widget/chat`` (one question, answered as the API's server-sent events, sources in the last chunk) and
``POST /widget/lead`` (the form a hand-off outside opening hours offers).

The widget's key is publishable: it sits in the shop's page, so it can only chat. ``WidgetGate`` refuses it on every
other route, grants CORS on the widget's routes to the origins in domain.yaml's ``serve.allowed_origins`` (and to the
server's own pages) and to no one else, and rate-limits each visitor on its own bucket.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from kit.server.guards import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    TokenBuckets,
    error_body,
    request_headers,
    same_secret,
    send_json,
)
from kit.server.openai_format import (
    CompletionRequest,
    api_error,
    read_turn,
    stream_events,
    turn_error_response,
)
from kit.server.settings import Limits
from kit.services.assistant.turns import TurnService
from kit.services.owner.leads import BadLead, LeadStore

logger = logging.getLogger(__name__)

SCRIPT_PATH = "/widget.js"
CHAT_PATH = "/widget/chat"
LEAD_PATH = "/widget/lead"
WIDGET_ROUTES = (CHAT_PATH, LEAD_PATH)
CONFIG_MARK = "/*KIT_CONFIG*/null"  # where the served script gets the domain's settings


class LeadRequest(BaseModel):
    """The lead form as the widget sends it."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=1000, description="The customer's name.")
    contact: str = Field(max_length=1000, description="An e-mail address or a phone number.")
    question: str = Field(max_length=10_000, description="What they want the team to answer.")
    conversation: str = Field(default="", max_length=64, description="The conversation the hand-off was in.")


def script(turns: TurnService) -> str:
    """widget.js with the domain's name, greeting and colours (domain.yaml's ``ui`` and ``persona``) filled in."""
    spec = turns.domain.spec
    config = {
        "title": spec.ui.title, "assistant": spec.persona.assistant_name, "greeting": spec.persona.greeting,
        "primary": spec.ui.primary_color, "secondary": spec.ui.secondary_color,
    }  # fmt: skip
    source = resources.files("kit.server").joinpath("static", "widget.js").read_text(encoding="utf-8")
    # </script> or U+2028 inside a JSON string would end or break the script: json.dumps escapes neither
    text = json.dumps(config).replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return source.replace(CONFIG_MARK, text, 1)


def add_widget(app: FastAPI, turns: TurnService, leads: LeadStore, limits: Limits) -> None:
    """The widget's three routes on ``app`` (its gate is ``WidgetGate``, added by the composition root)."""
    body_js = script(turns)

    @app.get(SCRIPT_PATH, include_in_schema=False)
    def widget_js() -> Response:
        return Response(body_js, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300"})

    @app.post(CHAT_PATH)
    def widget_chat(body: CompletionRequest) -> Any:
        read = read_turn(body, limits)
        if isinstance(read, JSONResponse):
            return read
        question, history = read
        turn = turns.start(question, history, body.kit.conversation)
        if turn.error is not None:
            return turn_error_response(turn.error)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        return StreamingResponse(stream_events(turn, turns.domain.name, cid), media_type="text/event-stream")

    @app.post(LEAD_PATH)
    def widget_lead(body: LeadRequest) -> JSONResponse:
        try:
            lead = leads.add(body.name, body.contact, body.question, body.conversation)
        except BadLead as exc:
            return api_error(400, str(exc), "invalid_request_error", "invalid_lead")
        logger.info("lead %d stored from the widget", lead)
        return JSONResponse({"id": lead, "message": "Thank you: the team will get back to you."}, status_code=201)


class WidgetGate:
    """ASGI middleware: the publishable key only on the widget's routes; CORS on them for the allowed origins only;
    each visitor's own rate on them."""

    def __init__(self, app: ASGIApp, key: str | None, origins: list[str], limits: Limits) -> None:
        self.app = app
        self.key = key
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.buckets = TokenBuckets(limits.widget_rate_per_minute, limits.widget_rate_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = request_headers(scope)
        path, method = str(scope.get("path", "")), scope.get("method", "")
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        is_widget_key = bool(self.key and given and same_secret(given, self.key))
        if path not in WIDGET_ROUTES:
            if is_widget_key:
                message = "this is the widget's publishable key: it can only chat, through the widget's routes"
                await send_json(send, 403, error_body(message, "permission_error", "widget_key_only_chats"))
                return
            await self.app(scope, receive, send)
            return
        origin = headers.get("origin")
        granted = origin is not None and self.allowed(origin, scope, headers)
        if origin is not None and not granted:  # no CORS grant, and no answer for a page of another site
            message = f"origin {origin} may not use this widget — add it to serve.allowed_origins in domain.yaml"
            await send_json(send, 403, error_body(message, "permission_error", "origin_not_allowed"))
            return
        cors = _cors_headers(origin) if granted and origin else {}
        if method == "OPTIONS":  # a preflight: the grant is in the headers
            raw = [(k.encode(), v.encode()) for k, v in cors.items()]
            await send({"type": "http.response.start", "status": 204, "headers": raw})
            await send({"type": "http.response.body", "body": b""})
            return
        refusal = self.refusal(is_widget_key, scope)
        if refusal is not None:
            status, body, extra = refusal
            await send_json(send, status, body, {**cors, **extra})
            return
        await self.app(scope, receive, _with_headers(send, cors))

    def allowed(self, origin: str, scope: Scope, headers: dict[str, str]) -> bool:
        """A listed origin, or the server's own (its pages use the widget too)."""
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        return origin.rstrip("/") in self.origins or origin == own

    def refusal(self, is_widget_key: bool, scope: Scope) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """Why a widget request is refused (status, body, headers), or None."""
        if not self.key:
            message = "the chat widget is off on this server — its owner sets KIT_WIDGET_KEY to turn it on"
            return 403, error_body(message, "permission_error", "widget_off"), {}
        if not is_widget_key:
            message = "invalid or missing widget key — copy data-key from the widget's script tag"
            return 401, error_body(message, "invalid_request_error", "invalid_widget_key"), {}
        peer = scope.get("client") or ("unknown", 0)
        wait = self.buckets.take(f"ip:{peer[0]}")
        if wait:
            seconds = math.ceil(wait)
            message = f"too many widget requests from this visitor: retry in {seconds} s"
            return 429, error_body(message, "rate_limit_error", "rate_limit_exceeded"), {"retry-after": str(seconds)}
        return None


def _cors_headers(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-headers": "authorization, content-type, x-request-id",
        "access-control-expose-headers": "retry-after, x-request-id",
        "access-control-max-age": "600",
        "vary": "Origin",
    }


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    """``send`` that adds ``extra`` headers to the response."""
    if not extra:
        return send

    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            raw = [(k.encode(), v.encode()) for k, v in extra.items()]
            message = {**message, "headers": [*message.get("headers", []), *raw]}
        await send(message)

    return wrapped

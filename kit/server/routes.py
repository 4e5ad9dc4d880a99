"""The ``/v1`` routes: ``GET /v1/models`` lists the domains; ``POST /v1/chat/completions`` answers the last user message
through the turn service the UI uses too (retrieval, guardrails, the one admission queue, recording; the domain's own
system prompt and rules apply, a client's system messages are ignored), streamed or not. With one domain any ``model``
selects it; with several (kit/server/multi.py) ``model`` names the domain, and an unknown one is a 404."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from kit.server.guards import Guard, same_secret
from kit.server.openai_format import (
    CompletionRequest,
    api_error,
    completion_body,
    read_turn,
    stream_events,
    turn_error_response,
)
from kit.server.request_ids import RequestIds
from kit.server.settings import Limits
from kit.services.assistant.turns import TurnService


def build_api(
    service: TurnService | Sequence[TurnService], api_key: str | None = None, limits: Limits | None = None
) -> FastAPI:
    """The FastAPI app with the ``/v1`` routes over one domain's turn service or several, the guards and request ids
    (the UI is mounted on it by ``build_server``)."""
    limits = limits or Limits()
    services = {s.domain.name: s for s in ([service] if isinstance(service, TurnService) else service)}
    app = FastAPI(title="kit: " + ", ".join(s.domain.spec.display_name for s in services.values()))
    app.add_middleware(Guard, limits=limits, api_key=api_key)
    app.add_middleware(RequestIds)  # added last, so outermost: refusals by the guards carry an id too

    def chosen(model: str) -> TurnService | None:
        only = next(iter(services.values()))
        return only if len(services) == 1 else services.get(model)

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

    @app.get("/v1/models")
    def models(request: Request) -> Any:
        if not authorised(request):
            return api_error(401, "invalid or missing API key", "invalid_request_error", "invalid_api_key")
        entries = [{"id": name, "object": "model", "created": 0, "owned_by": "kit", "engine": s.model}
                   for name, s in services.items()]  # fmt: skip
        return {"object": "list", "data": entries}

    @app.post("/v1/chat/completions")
    def chat_completions(body: CompletionRequest, request: Request) -> Any:
        if not authorised(request):
            return api_error(401, "invalid or missing API key", "invalid_request_error", "invalid_api_key")
        read = read_turn(body, limits)
        if isinstance(read, JSONResponse):
            return read
        question, history = read
        service = chosen(body.model)
        if service is None:
            known = ", ".join(services)
            return api_error(404, f"unknown model '{body.model}' — set model to one of this server's domains: {known}",
                             "invalid_request_error", "model_not_found")  # fmt: skip
        turn = service.start(question, history, body.kit.conversation)
        if turn.error is not None:
            return turn_error_response(turn.error)
        cid, model_id = f"chatcmpl-{uuid.uuid4().hex}", service.domain.name
        if body.stream:
            return StreamingResponse(stream_events(turn, model_id, cid), media_type="text/event-stream")
        turn.finish()
        if turn.error is not None:  # the model failed in the middle of the answer
            return turn_error_response(turn.error)
        return completion_body(turn, model_id, cid)

    return app

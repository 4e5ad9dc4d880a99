"""The one client kit has for an OpenAI-compatible server's ``/chat/completions``: a model server answering chat
turns (``model.server``, streamed) and a teacher writing training data (``kit synth --teacher``, one JSON reply).

Its base URL, the API key read from the environment variable domain.yaml or the command names (never from a
file kit writes), one connection pool, and an error body read the OpenAI way; what a refusal means is the caller's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

CHAT = "/chat/completions"


class Unreachable(Exception):
    """The server did not answer: no connection, a timeout, a connection dropped mid-reply."""


class OpenAIClient:
    """One OpenAI-compatible server."""

    def __init__(self, base_url: str, api_key_env: str | None, timeout_s: float) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        key = os.environ.get(api_key_env) if api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    @property
    def chat_url(self) -> str:
        return self.base_url + CHAT

    def post_chat(self, body: dict[str, Any]) -> httpx.Response:
        """The server's response to one chat completion, whatever its status; Unreachable when there is none."""
        import httpx

        try:
            return self.http.post(CHAT, json=body)
        except httpx.HTTPError as exc:
            raise Unreachable(str(exc)) from None

    @contextmanager
    def stream_chat(self, body: dict[str, Any]) -> Iterator[httpx.Response]:
        """The streamed response to one chat completion, its lines read by the caller; Unreachable as above, also
        when the connection drops while the caller reads."""
        import httpx

        try:
            with self.http.stream("POST", CHAT, json=body) as response:
                yield response
        except httpx.HTTPError as exc:
            raise Unreachable(str(exc)) from None

    def close(self) -> None:
        self.http.close()


def error_message(text: str) -> str:
    """The message of an OpenAI-style error body ({"error": {"message": ...}}), else the body's start."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:300] if message else text[:200]

"""Several domains in one server (``kit serve domains/a domains/b …``): each distinct base model loaded once, each
domain's LoRA adapters set per turn (kit/components/model_pool.py); the API at /v1 with ``model`` naming the domain
(/v1/models lists them); each domain's UI at /<name>/ with its own retrieval, guardrails, feedback store and branding;
at / a page linking them. The domains on one loaded model share one admission queue, since their turns run one at a
time on it: KIT_MAX_BUSY counts the turns of all of them. One domain is served by ``build_server`` (kit/server/app.py)
at / and /v1 as before.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from kit.components.model_pool import ModelPool, load_key
from kit.domain import Domain, load_domain
from kit.errors import KitError
from kit.server.routes import build_api
from kit.server.settings import Limits, feedback_store
from kit.services.assistant.admission import Admission
from kit.services.assistant.chat import ChatService
from kit.services.assistant.turns import TurnService

# The server's own top-level paths, which a domain's UI at /<name>/ would hide (or be hidden by).
RESERVED = frozenset({"admin", "docs", "redoc", "static", "assets", "widget"})


def open_domains(dirs: Sequence[str | Path]) -> tuple[list[ChatService], ModelPool]:
    """Each domain's chat service over a pool that loads each base model once; names are checked before any load."""
    domains = [load_domain(d) for d in dirs]
    check_names(domains)
    pool = ModelPool()
    engines = pool.engines(domains)
    return [ChatService.open(d, engine=e) for d, e in zip(domains, engines, strict=True)], pool


def check_names(domains: Sequence[Domain]) -> None:
    """Each domain's name is its URL (/<name>/) and its API model id: one each, none of the server's own paths."""
    seen: dict[str, Path] = {}
    for domain in domains:
        if domain.name in RESERVED:
            raise KitError(
                f"{domain.root / 'domain.yaml'}: name '{domain.name}' is a path the server keeps (/{domain.name}/)",
                "give the domain another name in its domain.yaml",
            )
        if domain.name in seen:
            raise KitError(
                f"{seen[domain.name]} and {domain.root} are both named '{domain.name}'",
                "serve each domain once, or give each its own name in its domain.yaml",
            )
        seen[domain.name] = domain.root


def turn_services(services: Sequence[ChatService], limits: Limits) -> list[TurnService]:
    """A turn service per domain, each with its own feedback store; one admission queue per loaded model."""
    queues: dict[object, Admission] = {}
    turns = []
    for service in services:
        domain = service.domain
        group = load_key(domain.spec.model, domain.root) or domain.name  # a model server: the domain's own queue
        turns.append(
            TurnService(
                service, feedback_store(domain, named=True), queues.setdefault(group, Admission(limits.max_busy))
            )
        )
    return turns


def index_page(turns: Sequence[TurnService]) -> str:
    """The page at /: each domain's title, description and link to its UI."""
    items = "".join(
        f'<li><a href="/{t.domain.name}/">{html.escape(t.domain.spec.ui.title)}</a> '
        f"<small>({t.domain.name})</small><br>{html.escape(t.domain.spec.ui.description)}</li>"
        for t in turns
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Assistants</title></head>'
        '<body style="font-family: sans-serif; max-width: 40rem; margin: 2rem auto">'
        f"<h1>Assistants</h1><ul>{items}</ul>"
        "<p><small>API: <code>/v1/chat/completions</code> with <code>model</code> set to the name in brackets; "
        "<code>/v1/models</code> lists them.</small></p></body></html>"
    )


def build_multi_server(
    services: Sequence[ChatService],
    api_key: str | None = None,
    login: tuple[str, str] | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """The API at /v1 over every domain, each domain's UI at /<name>/, the index at /; ``login`` guards each UI."""
    import gradio as gr

    from kit.ui.app import build_app, launch_kwargs

    limits = limits or Limits()
    turns = turn_services(services, limits)
    app = build_api(turns, api_key, limits)
    page = index_page(turns)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    for turn in turns:
        ui = build_app(turn, queue_size=limits.queue_size)
        ui.state_session_capacity = limits.ui_sessions  # as build_server: Gradio keeps 10,000 sessions otherwise
        app = gr.mount_gradio_app(
            app, ui, path=f"/{turn.domain.name}", auth=login, max_file_size=limits.max_body_bytes,
            **launch_kwargs(turn),
        )  # fmt: skip
    return app

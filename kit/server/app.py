"""The composition root of `kit serve`: the feedback store, the API and the Gradio UI on one FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI

from kit.server.admin_login import ADMIN_PATH, LOGOUT_PATH, AdminAccess, AdminGate
from kit.server.documents_api import add_documents_api
from kit.server.routes import build_api
from kit.server.settings import Limits, feedback_store
from kit.server.widget import WidgetGate, add_widget
from kit.services.assistant.admission import Admission
from kit.services.assistant.chat import ChatService
from kit.services.assistant.turns import TurnService
from kit.services.owner.leads import LeadStore
from kit.services.retrieval.documents import DocumentService


def build_server(
    service: ChatService,
    api_key: str | None = None,
    login: tuple[str, str] | None = None,
    limits: Limits | None = None,
    admin: AdminAccess | None = None,
    widget_key: str | None = None,
) -> FastAPI:
    """API at /v1 and the Gradio UI at /, on one FastAPI app, over one turn service (one feedback store, one
    admission queue in front of the model); ``login`` puts a (user, password) form before the UI. With ``admin`` the
    owner's console is at /admin behind its login (kit/server/admin_login.py); without it /admin is off. The website
    widget (kit/server/widget.py) chats with ``widget_key``, its publishable key; without one it is off."""
    import gradio as gr

    from kit.ui.admin.app import build_console
    from kit.ui.app import build_app, launch_kwargs

    limits = limits or Limits()
    privacy = service.domain.spec.privacy
    store = feedback_store(service.domain)
    turns = TurnService(service, store, Admission(limits.max_busy))
    leads = LeadStore.beside(store.path, privacy.retention_days)
    app = build_api(turns, api_key, limits)
    add_widget(app, turns, leads, limits)
    documents = DocumentService(service)
    add_documents_api(app, documents, api_key)
    app.add_middleware(AdminGate, access=admin)
    # outermost: the widget's key is refused before any other gate reads it, and its CORS grant covers every answer
    origins = service.domain.spec.serve.allowed_origins
    app.add_middleware(WidgetGate, key=widget_key, origins=origins, limits=limits)
    if admin is not None:  # mounted before the customer UI at /, which would otherwise take /admin too
        console = build_console(turns, documents, leads, logout_path=LOGOUT_PATH)
        gr.mount_gradio_app(app, console, path=ADMIN_PATH, max_file_size=limits.max_body_bytes)
    ui = build_app(turns, queue_size=limits.queue_size, leads=leads)
    ui.state_session_capacity = limits.ui_sessions  # Gradio keeps 10,000 sessions otherwise: memory grows with visits
    return gr.mount_gradio_app(
        app, ui, path="/", auth=login, max_file_size=limits.max_body_bytes, **launch_kwargs(turns)
    )

"""The owner's console: one Gradio Blocks app with a tab per job, built from the services by the composition root.

Each tab module exposes ``add_..._tab(s)(...)``, which creates its ``gr.Tab``(s) inside the Blocks being built here.
"""

from __future__ import annotations

import gradio as gr

from kit.services.assistant.turns import TurnService
from kit.services.owner.insights import InsightsService
from kit.services.owner.leads import LeadStore
from kit.services.retrieval.documents import DocumentService
from kit.ui.admin.documents import add_documents_tab
from kit.ui.admin.insights import add_insight_tabs
from kit.ui.admin.leads import add_leads_tab
from kit.ui.app import quiet_queue

QUEUE_MAX = 16  # the console has one owner, not a crowd


def build_console(
    turns: TurnService, documents: DocumentService, leads: LeadStore | None = None, logout_path: str = "logout"
) -> gr.Blocks:
    """The console's Blocks app: the domain's documents, the other tabs over the turn service's store, and the leads
    customers left outside opening hours; ``logout_path`` is where the server that mounts it ends a session."""
    spec = turns.domain.spec
    with gr.Blocks(title=f"{spec.display_name}: owner's console", analytics_enabled=False) as console:
        with gr.Row():
            gr.Markdown(f"# {spec.display_name} · owner's console")
            gr.HTML(f'<p style="text-align:right"><a href="{logout_path}">Log out</a></p>')
        with gr.Tabs():
            add_documents_tab(documents)
            add_insight_tabs(InsightsService(turns.domain, turns.store))
            if leads is not None:
                add_leads_tab(leads)
    return quiet_queue(console.queue(max_size=QUEUE_MAX, default_concurrency_limit=2))

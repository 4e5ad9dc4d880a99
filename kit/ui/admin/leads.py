"""The console's Leads tab: what customers left when a hand-off found the team away, newest first, and the whole list
as a CSV download, over the lead service only."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from kit.services.owner.leads import LeadStore

COLUMNS = ["When (UTC)", "Name", "E-mail or phone", "Question"]


class LeadsTab:
    """Callbacks of the Leads tab, bound to one lead store."""

    def __init__(self, leads: LeadStore) -> None:
        self.leads = leads
        self.folder = Path(tempfile.mkdtemp(prefix="kit-leads-"))

    def table(self) -> pd.DataFrame:
        rows = [[time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["created"])), r["name"], r["contact"], r["question"]]
                for r in self.leads.leads()]  # fmt: skip
        return pd.DataFrame(rows, columns=COLUMNS)

    def summary(self) -> str:
        n = len(self.leads.leads())
        if not n:
            return "_No leads yet: they come from hand-offs outside opening hours (handoff.contact.opening_hours)._"
        return f"**{n} lead{'s' if n != 1 else ''}**, newest first."

    def refresh(self) -> tuple[Any, ...]:
        return self.table(), self.summary()

    def export(self) -> str:
        """The leads as a CSV file to download."""
        path = self.folder / f"leads-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.csv"
        path.write_text(self.leads.csv_text(), encoding="utf-8")
        return str(path)


def add_leads_tab(leads: LeadStore) -> None:
    """The Leads tab, inside the Blocks (and Tabs) being built."""
    tab = LeadsTab(leads)
    with gr.Tab("Leads"):
        summary = gr.Markdown(tab.summary, elem_id="kit-leads-summary")  # read each time the page loads
        table = gr.Dataframe(tab.table, interactive=False, wrap=True, elem_id="kit-leads")
        with gr.Row():
            reload = gr.Button("Reload", variant="secondary")
            export = gr.Button("Export as CSV", variant="primary")
        download = gr.File(label="CSV", interactive=False, elem_id="kit-leads-csv")
    reload.click(tab.refresh, None, [table, summary])
    export.click(tab.export, None, download)

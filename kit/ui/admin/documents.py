"""The console's Documents tab: the documents the assistant serves, upload (add or replace), delete, and the
re-index's progress, over the documents service only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gradio as gr

from kit.services.retrieval.documents import DocumentService, Progress
from kit.services.retrieval.loaders import SUFFIXES

COLUMNS = ["Document", "Type", "Size (kB)", "Chunks served", "Named in domain.yaml"]
POLL_S = 1.0
STATES = {"checking": "checking", "indexing": "indexing", "done": "served", "failed": "not done, nothing changed"}


def progress_markdown(progress: Progress) -> str:
    """The latest change, how far its re-index is, and each problem that stopped it."""
    if progress.state == "idle":
        return "_No change yet in this session. The assistant answers from the index it started with._"
    when = time.strftime("%H:%M:%S", time.localtime(progress.when))
    line = f"**{progress.action}**: {STATES[progress.state]} ({when})"
    if progress.state == "indexing":
        done = f", {progress.embedded}/{progress.to_embed} chunks embedded" if progress.to_embed else ""
        line += f"{done}. Until it is served, questions are answered from the previous index."
    elif progress.message:
        line += f"\n\n{progress.message}"
    return line + "".join(f"\n- {p}" for p in progress.problems) + "".join(f"\n- stale: {w}" for w in progress.warnings)


class DocumentsTab:
    """Callbacks of the Documents tab, bound to one documents service."""

    def __init__(self, documents: DocumentService) -> None:
        self.documents = documents
        self.seen = documents.progress  # the delete choices change only when a change ends

    def table(self) -> list[list[Any]]:
        return [[d.path, d.kind, round(d.bytes / 1024, 1), d.chunks, "yes" if d.in_spec else ""]
                for d in self.documents.documents()]  # fmt: skip

    def choices(self) -> list[str]:
        return [d.path for d in self.documents.documents() if not d.in_spec]

    def deletable(self) -> Any:
        return gr.update(choices=self.choices(), value=None)

    def refresh(self) -> tuple[Any, ...]:
        progress = self.documents.progress
        changed, self.seen = progress is not self.seen, progress
        return self.table(), progress_markdown(progress), self.deletable() if changed else gr.skip()

    def upload(self, file: str | None, path: str) -> tuple[Any, ...]:
        """Start the upload's check and re-index in the background; the timer shows how it goes."""
        if not file:
            return gr.skip(), "Choose a file to upload first.", None
        name = Path(file).name
        self.documents.start("put", name, Path(file).read_bytes(), path.strip() or None)
        return self.table(), progress_markdown(self.documents.progress), None

    def delete(self, path: str | None) -> tuple[Any, ...]:
        if not path:
            return gr.skip(), "Choose a document to delete first."
        self.documents.start("delete", path)
        return self.table(), progress_markdown(self.documents.progress)


def add_documents_tab(documents: DocumentService) -> None:
    """The Documents tab, inside the console's Blocks."""
    tab = DocumentsTab(documents)
    with gr.Tab("Documents"):
        gr.Markdown(
            "The documents the assistant answers from. An upload with the name of a document replaces it; a new one "
            "goes into the domain's document folder, or where **Path** says. Each upload is checked as "
            "`kit validate` checks it, then indexed while the assistant keeps answering from the current index."
        )
        status = gr.Markdown(progress_markdown(documents.progress), elem_id="kit-doc-progress")
        table = gr.Dataframe(tab.table(), headers=COLUMNS, interactive=False, elem_id="kit-documents")
        with gr.Row():
            with gr.Column():
                file = gr.File(label="Upload a document", file_types=sorted(SUFFIXES), type="filepath",
                               elem_id="kit-doc-file")  # fmt: skip
                path = gr.Textbox(label="Path (optional)", placeholder="docs/policies/gift-wrapping.md")
                upload = gr.Button("Upload and index", variant="primary", elem_id="kit-doc-upload")
            with gr.Column():
                victim = gr.Dropdown(
                    label="Delete a document", choices=tab.choices(), value=None, elem_id="kit-doc-delete-choice"
                )
                delete = gr.Button("Delete and re-index", variant="stop", elem_id="kit-doc-delete")
        upload.click(tab.upload, [file, path], [table, status, file])
        delete.click(tab.delete, [victim], [table, status])
        timer = gr.Timer(POLL_S)
        timer.tick(tab.refresh, None, [table, status, victim], show_progress="hidden")

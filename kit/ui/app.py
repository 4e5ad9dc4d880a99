"""The chat UI: Gradio Blocks over the served chat turn (kit/services/assistant/turns.py) only.

Per browser session it keeps the conversation id, the history as the model saw it (for KV-cache
reuse) and the stored turn id of each answer (for thumbs up/down). Admission, recording and errors
are the turn service's, the same as the API's. A hand-off outside opening hours opens a short lead form under the
chat (name, e-mail or phone, question), stored by the lead service (kit/services/owner/leads.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import gradio as gr

from kit.services.assistant.reply import Reply
from kit.services.assistant.turns import ChatMessage, TurnService
from kit.services.owner.feedback import new_conversation
from kit.services.owner.leads import BadLead, LeadStore

logger = logging.getLogger(__name__)

MAX_OFFERS = 1000  # lead forms offered and not yet opened, kept per conversation
QUEUE_MAX = 64  # waiting requests beyond this are refused at once rather than piling up
WORKERS = 4  # the model itself runs one answer at a time; workers keep fixed replies and the UI responsive
# Gradio's queue has no wake-up signal: its loops poll, every 1 ms for new events and every 10 ms for progress
# updates (Linux defaults), ~1,100 wake-ups a second that cost an idle `kit serve` 2-5% of a core. At these
# intervals (Gradio's own on Windows) a UI event starts at most 50 ms later, against answers of seconds.
QUEUE_POLL_S = {"sleep_when_free": 0.05, "progress_update_sleep_when_free": 0.1}


def sources_markdown(reply: Reply) -> str:
    """The answer's sources as a Markdown list, cited ones marked."""
    if not reply.sources:
        return f"_No sources: {reply.kind} reply from the domain's guardrails._" if reply.kind != "answer" else ""
    cited = set(reply.cited)
    lines = [f"- {'**' if s.n in cited else ''}{s.label()}{'**' if s.n in cited else ''}" for s in reply.sources]
    quoted = (
        "<small>The assistant could not answer this in its own words with facts the documents hold, so it "
        "quotes the closest passage.</small>\n\n"
        if reply.fallback
        else ""
    )
    return quoted + "**Sources**\n\n" + "\n".join(lines)


def status_markdown(reply: Reply) -> str:
    """Model name and latency of the last answer."""
    if reply.total_s is None:
        return f"Model: `{reply.model}` · answering…"
    return f"Model: `{reply.model}` · answer in {reply.total_s:.2f} s (first token {reply.ttft_s or 0:.2f} s)"


class ChatUI:
    """Callbacks of the Blocks app, bound to one turn service."""

    def __init__(self, service: TurnService, leads: LeadStore | None = None) -> None:
        self.service = service
        self.leads = leads
        self.offers: dict[str, str] = {}  # conversation -> the question a hand-off outside hours offered a form for

    def respond(
        self, message: str, chat: list[dict[str, Any]], history: list[ChatMessage], conv: str, turns: dict[str, int]
    ) -> Iterator[tuple[Any, ...]]:
        """Stream one answer into the chat, then show its sources and latency; a failed turn (busy, too long for the
        model, the model failing mid-answer) shows what was written and the error, and stays out of the history."""
        if not message.strip():
            yield "", chat, gr.skip(), gr.skip(), history, conv, turns
            return
        chat = [*chat, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        turn = self.service.start(message, history, conv or None)
        conv, reply = turn.conversation, turn.reply
        if reply is None:
            chat[-1] = {"role": "assistant", "content": turn.text}
            yield "", chat, "", gr.skip(), history, conv, turns
            return
        sources = sources_markdown(reply)
        for piece in turn:
            chat[-1] = {"role": "assistant", "content": chat[-1]["content"] + piece}
            yield "", chat, sources, status_markdown(reply), history, conv, turns
        chat[-1] = {"role": "assistant", "content": turn.text}
        turns = {**turns, str(len(chat) - 1): turn.turn_id}
        if turn.error:
            yield "", chat, sources, f"Model: `{reply.model}` · the answer failed", history, conv, turns
            return
        history = [*history, *reply.history()]
        if reply.lead_form and self.leads is not None:
            self.offers[conv] = message
            if len(self.offers) > MAX_OFFERS:  # a client that never asks for the form (the API) leaves its offer
                self.offers.pop(next(iter(self.offers)))
        yield "", chat, sources_markdown(reply), status_markdown(reply), history, conv, turns

    def lead_offer(self, conv: str) -> tuple[Any, ...]:
        """Open the lead form when the answer just given was a hand-off outside opening hours."""
        question = self.offers.pop(conv, None)
        if question is None:
            return gr.skip(), gr.skip(), gr.skip()
        return gr.update(visible=True), question, ""

    def close_lead(self) -> tuple[Any, ...]:
        """A new chat starts without the form."""
        return gr.update(visible=False), ""

    def send_lead(self, name: str, contact: str, question: str, conv: str) -> tuple[Any, ...]:
        """Store the lead and close the form, or say what to fix and keep it open with what was typed."""
        assert self.leads is not None
        try:
            self.leads.add(name, contact, question, conv)
        except BadLead as exc:
            return gr.skip(), f"⚠️ {exc}"
        return gr.update(visible=False), "Thank you: the team will get back to you."

    def like(self, turns: dict[str, int], data: gr.LikeData) -> None:
        """Store a thumbs up/down for the answer it was given on."""
        index = data.index[0] if isinstance(data.index, list | tuple) else data.index
        turn = turns.get(str(index))
        if turn is not None:
            self.service.rate(turn, bool(data.liked))

    def new_chat(self) -> tuple[Any, ...]:
        return self.greeting(), "", "", [], new_conversation(), {}

    def greeting(self) -> list[dict[str, Any]]:
        return [{"role": "assistant", "content": self.service.greeting()}]


def theme(primary: str, secondary: str) -> gr.themes.Base:
    """A theme in the domain's colours."""
    return gr.themes.Soft().set(
        button_primary_background_fill=primary,
        button_primary_background_fill_hover=primary,
        button_primary_text_color="#ffffff",
        background_fill_secondary=secondary,
        color_accent=primary,
    )


def build_app(service: TurnService, queue_size: int = QUEUE_MAX, leads: LeadStore | None = None) -> gr.Blocks:
    """The Blocks app for a domain, queued: at most ``queue_size`` requests waiting, ``WORKERS`` running (their turns
    then wait for the model in the admission queue the API shares); with ``leads``, the after-hours lead form."""
    ui, brand = ChatUI(service, leads), service.domain.spec.ui
    with gr.Blocks(title=brand.title, analytics_enabled=False) as app:
        gr.Markdown(f"# {brand.title}\n{brand.description}")
        history, conv, turns = gr.State([]), gr.State(new_conversation), gr.State({})
        with gr.Tab("Chat"), gr.Row():
            with gr.Column(scale=3):
                chat = gr.Chatbot(ui.greeting(), label=service.domain.spec.persona.assistant_name, height=480)
                box = gr.Textbox(placeholder="Ask a question…", show_label=False, submit_btn=True)
                with gr.Column(visible=False, elem_id="kit-lead") as lead_box:
                    gr.Markdown("**Leave your details for the team**")
                    lead_name = gr.Textbox(label="Your name", max_length=120)
                    lead_contact = gr.Textbox(label="E-mail or phone", max_length=200)
                    lead_question = gr.Textbox(label="Your question", lines=2, max_length=2000)
                    lead_send = gr.Button("Send to the team", variant="primary")
                lead_status = gr.Markdown("", elem_id="kit-lead-status")
                new = gr.Button("New chat", variant="secondary")
                if brand.example_questions:
                    gr.Examples(brand.example_questions, inputs=box, label="Try asking")
            with gr.Column(scale=2):
                status = gr.Markdown(f"Model: `{service.model}`", elem_id="kit-status")
                sources = gr.Markdown("", elem_id="kit-sources")
        outputs = [box, chat, sources, status, history, conv, turns]
        answered = box.submit(ui.respond, [box, chat, history, conv, turns], outputs, api_name="chat")
        answered.then(ui.lead_offer, [conv], [lead_box, lead_question, lead_status])
        lead_send.click(ui.send_lead, [lead_name, lead_contact, lead_question, conv], [lead_box, lead_status],
                        api_name="lead")  # fmt: skip
        chat.like(ui.like, [turns], None)
        started = new.click(ui.new_chat, None, [chat, sources, box, history, conv, turns], api_name="new_chat")
        started.then(ui.close_lead, None, [lead_box, lead_status])
    return quiet_queue(app.queue(max_size=queue_size, default_concurrency_limit=WORKERS))


def quiet_queue(app: gr.Blocks) -> gr.Blocks:
    """``app`` with its queue polling at ``QUEUE_POLL_S``; call it after the last ``queue()``, which makes a new one."""
    queue = app._queue
    for name, seconds in QUEUE_POLL_S.items():
        if not isinstance(getattr(queue, name, None), int | float):  # a Gradio upgrade renamed it: say so
            logger.warning("Gradio's queue has no %s: its idle polling is not slowed down", name)
        setattr(queue, name, max(seconds, getattr(queue, name, 0)))
    return app


def launch_kwargs(service: TurnService) -> dict[str, Any]:
    """Theme and CSS for launch() or mount_gradio_app() (Gradio 6 takes them there)."""
    brand = service.domain.spec.ui
    css = f"#kit-sources {{ background: {brand.secondary_color}; padding: 0.5rem; border-radius: 8px; }}"
    return {"theme": theme(brand.primary_color, brand.secondary_color), "css": css}

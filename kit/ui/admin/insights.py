"""The console's Conversations, Content gaps, Analytics and Eval report tabs, over the insights service only.

``add_insight_tabs(insights)`` adds the four tabs inside the console's current ``gr.Blocks``; what a tab shows is read
from the feedback store each time the page loads and whenever the owner searches or reloads.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

import gradio as gr
import pandas as pd

from kit.errors import KitError
from kit.services.owner.analytics import OUTCOMES, Analytics
from kit.services.owner.content_gaps import SIMILAR, WEAK_BELOW
from kit.services.owner.insights import SHOW, Found, InsightsService, Search

logger = logging.getLogger(__name__)

FOUND_COLUMNS = ["started", "turns", "first question", "marks", "conversation"]
GAP_COLUMNS = ["customers", "asked", "refused", "weak evidence", "example", "other wordings"]
PERIODS = {"last 7 days": 7, "last 30 days": 30, "last 90 days": 90, "all": None}
KIND_NAMES = {"answer": "answered", "refuse": "refused", "handoff": "hand-off", "rule": "rule", "error": "error"}


def add_insight_tabs(insights: InsightsService) -> None:
    """Add the Conversations, Content gaps, Analytics and Eval report tabs to the Blocks being built."""
    view = InsightsView(insights)
    with gr.Tab("Conversations", elem_id="kit-admin-conversations"):
        view.conversations_tab()
    with gr.Tab("Content gaps", elem_id="kit-admin-gaps"):
        view.gaps_tab()
    with gr.Tab("Analytics", elem_id="kit-admin-analytics") as analytics:
        view.analytics_tab(analytics)
    with gr.Tab("Eval report", elem_id="kit-admin-eval") as report:
        view.eval_tab(report)


def error_line(exc: KitError) -> str:
    return f"error: {exc}"


def parse_day(text: str, name: str) -> date | None:
    """A YYYY-MM-DD day typed by the owner; None when blank."""
    from kit.errors import DataError

    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"'{text.strip()}' is not a day ({name})", "write it as YYYY-MM-DD, e.g. 2026-12-01") from None


def when(created: float, zone: tzinfo) -> str:
    return datetime.fromtimestamp(created, zone).strftime("%Y-%m-%d %H:%M")


class InsightsView:
    """The tabs' callbacks, bound to one insights service."""

    def __init__(self, insights: InsightsService) -> None:
        self.insights = insights

    # --- Conversations ---------------------------------------------------------------------------------------------

    def conversations_tab(self) -> None:
        with gr.Row():
            text = gr.Textbox(label="Search questions and answers", scale=3, elem_id="kit-admin-search")
            show = gr.Dropdown(list(SHOW), value="all", label="Show", scale=1, elem_id="kit-admin-show")
            zone = self.insights.zone_name
            since = gr.Textbox(label=f"From (YYYY-MM-DD, {zone})", scale=1)
            until = gr.Textbox(label=f"To (YYYY-MM-DD, {zone})", scale=1)
            go = gr.Button("Search", variant="primary", scale=0, elem_id="kit-admin-search-go")
        status = gr.Markdown(elem_id="kit-admin-search-status")
        found = gr.Dataframe(
            lambda: self._table(self.insights.search(Search())), headers=FOUND_COLUMNS, interactive=False,
            wrap=True, elem_id="kit-admin-found",
        )  # fmt: skip
        conversation = gr.Dropdown(
            choices=[], label="Open a conversation", allow_custom_value=True, elem_id="kit-admin-open"
        )
        transcript = gr.Markdown(elem_id="kit-admin-transcript")
        with gr.Group():
            turn = gr.Dropdown(choices=[], label="Correct this answer", elem_id="kit-admin-turn")
            question = gr.Textbox(label="Question (reword it so it reads on its own)", elem_id="kit-admin-question")
            answer = gr.Textbox(label="The right answer", lines=5, elem_id="kit-admin-answer")
            save = gr.Button("Save the correction for training", variant="primary", elem_id="kit-admin-save")
            saved = gr.Markdown(elem_id="kit-admin-saved")
        searched = [found, conversation, status]
        for trigger in (go.click, text.submit):
            trigger(self.search, [text, show, since, until], searched)
        show.change(self.search, [text, show, since, until], searched)
        found.select(self.pick, [found], conversation)
        conversation.change(self.open, [conversation], [transcript, turn, question, answer, saved])
        turn.input(self.choose, [conversation, turn], [question, answer, saved])  # the owner's pick, not open()'s
        save.click(self.correct, [conversation, turn, question, answer], [transcript, saved])

    def _table(self, found: list[Found]) -> pd.DataFrame:
        rows = [
            [when(f.started, self.insights.zone), f.turns, f.first_question, f.marks, f.conversation] for f in found
        ]
        return pd.DataFrame(rows, columns=FOUND_COLUMNS)

    def search(self, text: str, show: str, since: str, until: str) -> tuple[Any, ...]:
        """The conversations that match, and the choices of the conversation picker."""
        try:
            found = self.insights.search(Search(text, show, parse_day(since, "From"), parse_day(until, "To")))  # type: ignore[arg-type]
        except KitError as exc:
            return gr.skip(), gr.skip(), error_line(exc)
        choices = [(f"{when(f.started, self.insights.zone)} · {f.first_question[:60]}", f.conversation) for f in found]
        n = len(found)
        summary = f"{n} conversation{'s' if n != 1 else ''} found" + (" (the latest shown)" if n >= 200 else "")
        return self._table(found), gr.update(choices=choices, value=None), summary

    @staticmethod
    def pick(table: pd.DataFrame, event: gr.SelectData) -> Any:
        """The conversation of the table row the owner clicked."""
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        if table is None or row is None or row >= len(table):
            return gr.skip()
        return table.iloc[row]["conversation"]

    def open(self, conversation: str | None) -> tuple[Any, ...]:
        """A conversation's turns, and the picker of the answer to correct."""
        turns = self.insights.turns(conversation) if conversation else []
        if not turns:
            return "", gr.update(choices=[], value=None), "", "", ""
        choices = [(f"Turn {i}: {t['question'][:60]}", str(t["id"])) for i, t in enumerate(turns, start=1)]
        last = turns[-1]
        fixed = last["correction"] or last["answer"]
        return (
            transcript(turns, self.insights.zone),
            gr.update(choices=choices, value=str(last["id"])),
            last["question"],
            fixed,
            "",
        )

    def choose(self, conversation: str | None, turn_id: str | None) -> tuple[Any, ...]:
        """The question and the answer (or its correction) of the turn picked for correcting."""
        for t in self.insights.turns(conversation) if conversation and turn_id else []:
            if str(t["id"]) == turn_id:
                return t["question"], t["correction"] or t["answer"], ""
        return gr.skip(), gr.skip(), ""

    def correct(self, conversation: str | None, turn_id: str | None, question: str, answer: str) -> tuple[Any, ...]:
        """Save the correction; a bad one says why and saves nothing."""
        if not turn_id:
            return gr.skip(), "error: no answer picked — open a conversation and pick the answer to correct"
        try:
            record = self.insights.correct(int(turn_id), answer, question)
        except KitError as exc:
            return gr.skip(), error_line(exc)
        turns = self.insights.turns(conversation) if conversation else []
        where = self.insights.domain.rel(self.insights.domain.root / "data" / "corrections.jsonl")
        return transcript(
            turns, self.insights.zone
        ), f"Saved as `{record.id}` in `{where}`: the next `kit finetune` trains on it."

    # --- Content gaps ----------------------------------------------------------------------------------------------

    def gaps_tab(self) -> None:
        gr.Markdown(
            "Questions the assistant refused, or answered on weak evidence (the best document passage it found was "
            "not close to the question), grouped by meaning. Add a document that answers the biggest groups."
        )
        with gr.Row():
            weak = gr.Slider(0.0, 1.0, value=WEAK_BELOW, step=0.05, label="Weak evidence below (similarity)")
            similar = gr.Slider(0.3, 0.95, value=SIMILAR, step=0.05, label="Same question from (similarity)")
            period = gr.Dropdown(list(PERIODS), value="last 30 days", label="Period")
            go = gr.Button("Find gaps", variant="primary", elem_id="kit-admin-gaps-go")
        summary = gr.Markdown(elem_id="kit-admin-gaps-summary")
        table = gr.Dataframe(headers=GAP_COLUMNS, interactive=False, wrap=True, elem_id="kit-admin-gaps-table")
        go.click(self.gaps, [weak, similar, period], [summary, table])

    def gaps(self, weak: float, similar: float, period: str) -> tuple[str, pd.DataFrame]:
        """The gaps as sentences and as a table."""
        try:
            found = self.insights.gaps(weak, similar, since(period, self.insights.today()))
        except KitError as exc:
            return error_line(exc), pd.DataFrame(columns=GAP_COLUMNS)
        if not found:
            return "No gaps: every question in this period was answered on good evidence.", pd.DataFrame(
                columns=GAP_COLUMNS
            )
        lines = [f"- {g.sentence()}" for g in found[:10]]
        rows = [[g.customers, g.asked, g.refused, g.weak, g.example, " · ".join(g.questions[1:6])] for g in found]
        return "\n".join(lines), pd.DataFrame(rows, columns=GAP_COLUMNS)

    # --- Analytics -------------------------------------------------------------------------------------------------

    def analytics_tab(self, tab: gr.Tab) -> None:
        """The figures are read from the store once, when the owner opens the tab (or changes the period), not on
        every page load."""
        with gr.Row():
            period = gr.Dropdown(list(PERIODS), value="last 30 days", label="Period", scale=1)
            go = gr.Button("Reload", variant="secondary", scale=0)
        summary = gr.Markdown(elem_id="kit-admin-analytics-summary")
        with gr.Row():
            per_day = gr.LinePlot(
                None,
                x="day",
                y="count",
                color="what",
                title=f"Per day ({self.insights.zone_name})",
                elem_id="kit-admin-per-day",
            )
            outcomes = gr.BarPlot(
                None,
                x="outcome",
                y="share",
                title="How turns ended",
                y_lim=[0, 1],
                sort=None,
                elem_id="kit-admin-outcomes",
            )
        with gr.Row():
            thumbs = gr.BarPlot(None, x="thumbs", y="count", title="Thumbs")
            top = gr.Dataframe(None, interactive=False, wrap=True, label="Top questions")
        outputs = [summary, per_day, outcomes, thumbs, top]
        for trigger in (tab.select, go.click, period.change):
            trigger(self.analytics, [period], outputs)

    def analytics(self, period: str) -> tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The summary line and the four figures' data for a period."""
        return figures(self.insights.analytics(since(period, self.insights.today())))

    # --- Eval report -----------------------------------------------------------------------------------------------

    def eval_tab(self, tab: gr.Tab) -> None:
        """The latest report, read once when the owner opens the tab (or reloads it)."""
        text = gr.Markdown(elem_id="kit-eval")
        plot = gr.Image(label="Quality against cost", type="filepath")
        reload = gr.Button("Reload the latest report", variant="secondary")
        for trigger in (tab.select, reload.click):
            trigger(self.eval_report, None, [text, plot])

    def eval_report(self) -> tuple[str, str | None]:
        """The latest eval report (Markdown, plot file), or how to make one."""
        text, plot = self.insights.eval_report()
        return text, str(plot) if plot else None


def since(period: str, today: date) -> date | None:
    """The first day of a period named in ``PERIODS`` that ends ``today``."""
    days = PERIODS.get(period)
    return None if days is None else today - timedelta(days=days - 1)


def figures(stats: Analytics) -> tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the Analytics tab shows of ``stats``: a summary, per-day counts, outcome shares, thumbs, top questions."""
    rates = " · ".join(f"{name} {stats.rate(name):.0%}" for name in OUTCOMES)
    summary = (
        f"**{stats.conversations}** conversations, **{stats.turns}** questions · {rates} · "
        f"thumbs up {stats.thumbs_up}, down {stats.thumbs_down}"
    )
    per_day = pd.DataFrame(
        [(d, what, n) for d, convs, turns in stats.per_day for what, n in (("conversations", convs),
                                                                            ("questions", turns))],
        columns=["day", "what", "count"],
    )  # fmt: skip
    outcomes = pd.DataFrame([(name, stats.rate(name)) for name in OUTCOMES], columns=["outcome", "share"])
    thumbs = pd.DataFrame([("up", stats.thumbs_up), ("down", stats.thumbs_down)], columns=["thumbs", "count"])
    top = pd.DataFrame(stats.top_questions, columns=["question", "times asked"])
    return summary, per_day, outcomes, thumbs, top


def transcript(turns: list[dict[str, Any]], zone: tzinfo) -> str:
    """A conversation as Markdown: each question, the answer as the customer saw it, and what the store knows."""
    parts = []
    for i, t in enumerate(turns, start=1):
        facts = [KIND_NAMES.get(t["kind"], t["kind"]), when(t["created"], zone)]
        if t["rating"]:
            facts.append("thumbs up" if t["rating"] == 1 else "thumbs down")
        if t["withheld"]:
            facts.append(f"withheld: {t['withheld']}")
        if t["evidence"] is not None:
            facts.append(f"evidence {t['evidence']:.2f}")
        answer = "\n".join(f"> {line}" for line in t["answer"].splitlines()) or "> (no answer)"
        part = f"**Turn {i}** · {' · '.join(facts)}\n\n**Customer:** {t['question']}\n\n{answer}"
        if t["correction"]:
            part += f"\n\n**Corrected:** {t['correction']}"
        parts.append(part)
    return "\n\n---\n\n".join(parts)

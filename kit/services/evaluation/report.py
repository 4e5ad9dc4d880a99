"""The eval report: one self-contained HTML file (table, plot, verdict, failures) and a Markdown summary."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kit.services.evaluation.summary import headline

# quality columns, per split
COLUMNS = (
    ("answer_correctness", "correct (strict)", "pct"), ("lenient_correctness", "correct (lenient)", "pct"),
    ("citation_correctness", "cited right", "pct"), ("invented_facts", "invented facts", "int"),
    ("junk_answers", "junk answers", "int"), ("wrong_yes_no_rate", "wrong yes/no", "pct"),
    ("unknown_accuracy", "says unknown", "pct"), ("refusal_rate", "refusals", "pct"),
    ("false_refusal_rate", "false refusals", "pct"), ("withheld_rate", "withheld", "pct"),
    ("fallback_rate", "quoted passage", "pct"),
    ("handoff_accuracy", "hand-offs", "pct"), ("rule_accuracy", "rules", "pct"),
    ("recall_at_k", "recall@k", "pct"), ("contaminated_share", "contaminated", "pct"),
)  # fmt: skip
# speed and cost columns, per model
PERFORMANCE = (
    ("ttft_s", "first token s", "num"), ("tokens_per_s", "tokens/s", "num"), ("peak_rss_mb", "peak RSS MB", "num"),
    ("model_size_mb", "size MB", "num"), ("cost_per_1k_conversations", "$ / 1k conv.", "num"),
)  # fmt: skip
SPLIT_NAMES = {"heldout": "held-out", "dev": "dev"}


def cell(value: Any, kind: str) -> str:
    """One metric as the report shows it."""
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value:.0%}"
    return str(value) if kind == "int" else f"{value:g}"


Table = tuple[list[str], list[list[str]]]  # a header and rows of cells, written as Markdown or HTML


def split_table(
    first: str, columns: Sequence[tuple[str, str, str]], entries: Iterable[tuple[str, Mapping[str, Any]]]
) -> Table:
    """One row per (label, split) that has metrics: the label, the split, its item count, then ``columns``."""
    header = [first, "split", "items", *(c[1] for c in columns)]
    body = [
        [label, SPLIT_NAMES[split], str(m["items"]), *(cell(m[k], t) for k, _, t in columns)]
        for label, splits in entries
        for split, m in splits.items()
        if m
    ]
    return header, body


def quality_table(rows: list[dict[str, Any]]) -> Table:
    """Quality per model and split."""
    return split_table("model", COLUMNS, [(r["model"], {s: r.get(s) for s in SPLIT_NAMES}) for r in rows])


def performance_table(rows: list[dict[str, Any]]) -> Table:
    """Speed, memory, size and cost per model."""
    header = ["model", *(c[1] for c in PERFORMANCE)]
    return header, [[r["model"], *(cell(r[k], t) for k, _, t in PERFORMANCE)] for r in rows]


def md_lines(table: Table) -> list[str]:
    """A table as Markdown lines."""
    header, body = table
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|", *("| " + " | ".join(r) + " |" for r in body)]


def html_table(table: Table, table_id: str) -> str:
    """A table as HTML."""
    e = html.escape
    header, body = table
    th = "".join(f"<th>{e(c)}</th>" for c in header)
    trs = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in body)
    return f'<table id="{table_id}"><tr>{th}</tr>{trs}</table>'


def markdown(domain: str, rows: list[dict[str, Any]], verdict: str, failures: list[str]) -> str:
    """The Markdown summary: the tables, the verdict and the gate."""
    lines = [f"# Eval report: {domain}", "", verdict, "", *md_lines(quality_table(rows)), ""]
    lines += md_lines(performance_table(rows))
    lines += ["", "Gate: " + ("passed." if not failures else "failed — " + "; ".join(failures))]
    return "\n".join(lines) + "\n"


def plot_png(rows: list[dict[str, Any]]) -> bytes:
    """Quality against cost, latency and size, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, label) in zip(
        axes,
        (
            ("cost_per_1k_conversations", "$ per 1,000 conversations"),
            ("ttft_s", "time to first token (s)"),
            ("model_size_mb", "model size (MB)"),
        ),
        strict=True,
    ):
        for r in rows:
            x, y = r.get(key), headline(r, "answer_correctness")
            if x is not None and y is not None:
                ax.scatter([x], [y * 100], s=60)
                ax.annotate(r["model"], (x, y * 100), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("strict correctness, gated split (%)")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def html_report(domain: str, rows: list[dict[str, Any]], verdict: str, failures: list[str], png: bytes) -> str:
    """One self-contained HTML page (the plot is inlined)."""
    e = html.escape

    inline = base64.b64encode(png).decode()
    gate = (
        "<p class=ok>Gate passed.</p>"
        if not failures
        else "<ul class=bad>" + "".join(f"<li>{e(f)}</li>" for f in failures) + "</ul>"
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Eval report: {e(domain)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
.ok{{color:#166534}}.bad{{color:#b91c1c}}details{{margin:.4em 0}}
pre{{white-space:pre-wrap;background:#f8fafc;padding:.5em}}
</style></head><body><h1>Eval report: {e(domain)}</h1><p id="verdict">{e(verdict)}</p>
{html_table(quality_table(rows), "metrics")}<h2>Speed and cost</h2>{html_table(performance_table(rows), "performance")}
<h2>Quality against cost, latency and size</h2><img id="plot" alt="quality plot" src="data:image/png;base64,{inline}">
<h2>Gate</h2>{gate}<h2>Failed questions</h2>{_failures(rows)}</body></html>"""


def _failures(rows: list[dict[str, Any]]) -> str:
    e = html.escape
    parts = []
    for row in rows:
        bad = [a for a in row["results"] if not a["passed"]]
        parts.append(f"<h3>{e(row['model'])}: {len(bad)} of {len(row['results'])} failed</h3>")
        for a in bad:
            expected = ", ".join(a["expected_facts"])
            where = ", ".join(a["sources_expected"])
            parts.append(
                f"<details><summary>{e(a['id'])} ({e(a['split'])}; {e('; '.join(a['why']))}): "
                f"{e(a['question'])}</summary>"
                f"<p>expected: {e(a['expect'])} {e(expected)}{' from ' + e(where) if where else ''}</p>"
                f"<p>got ({e(a['kind'])}):</p><pre>{e(a['answer'])}</pre>"
                f"<p>retrieved:</p><pre>{e(chr(10).join(a['sources']) or '(none)')}</pre></details>"
            )
    return "\n".join(parts)


def answers_jsonl(rows: list[dict[str, Any]]) -> str:
    """Every answer of every model with its verdicts and reasons, one JSON object a line."""
    return "".join(json.dumps(a, ensure_ascii=False) + "\n" for row in rows for a in row["results"])


def write(
    folder: Path,
    domain: str,
    rows: list[dict[str, Any]],
    verdict: str,
    failures: list[str],
    html_path: Path | None = None,
) -> tuple[Path, Path]:
    """Write report.html, report.md and report.jsonl (every answer), keeping the latest copy of each in ``folder``;
    return the HTML and Markdown paths."""
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_png(rows)
    page = html_report(domain, rows, verdict, failures, png)
    summary = markdown(domain, rows, verdict, failures)
    (folder / "latest.png").write_bytes(png)
    html_path = html_path or folder / "latest.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    md_path = html_path.with_suffix(".md")
    md_path.write_text(summary, encoding="utf-8")
    answers = answers_jsonl(rows)
    html_path.with_suffix(".jsonl").write_text(answers, encoding="utf-8")
    if html_path.parent.resolve() != folder.resolve():
        (folder / "latest.html").write_text(page, encoding="utf-8")
        (folder / "latest.md").write_text(summary, encoding="utf-8")
        (folder / "latest.jsonl").write_text(answers, encoding="utf-8")
    return html_path, md_path


def latest(folder: Path) -> tuple[str | None, Path | None]:
    """The latest report's Markdown summary and plot in ``folder`` (None where there is none yet)."""
    md, png = folder / "latest.md", folder / "latest.png"
    return (md.read_text(encoding="utf-8") if md.is_file() else None), (png if png.is_file() else None)

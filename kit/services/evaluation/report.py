"""The eval report: one self-contained HTML file (table, plot, verdict, failures) and a Markdown summary."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

from kit.services.evaluation.runner import ModelRun

COLUMNS = (
    ("answer_correctness", "correct", "pct"), ("citation_correctness", "cited right", "pct"),
    ("groundedness", "grounded", "pct"), ("invented_facts", "invented facts", "int"),
    ("refusal_rate", "refusals", "pct"), ("false_refusal_rate", "false refusals", "pct"),
    ("withheld_rate", "withheld", "pct"),
    ("handoff_accuracy", "hand-offs", "pct"), ("rule_accuracy", "rules", "pct"),
    ("recall_at_k", "recall@k", "pct"), ("ttft_s", "first token s", "num"), ("tokens_per_s", "tokens/s", "num"),
    ("peak_rss_mb", "peak RSS MB", "num"), ("model_size_mb", "size MB", "num"),
    ("cost_per_1k_conversations", "$ / 1k conv.", "num"),
)  # fmt: skip


def cell(value: Any, kind: str) -> str:
    """One metric as the report shows it."""
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value:.0%}"
    return str(value) if kind == "int" else f"{value:g}"


def markdown(domain: str, rows: list[dict[str, Any]], verdict: str, failures: list[str]) -> str:
    """The Markdown summary: the table, the verdict and the gate."""
    lines = [
        f"# Eval report: {domain}",
        "",
        verdict,
        "",
        "| model | " + " | ".join(c[1] for c in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    lines += [f"| {r['model']} | " + " | ".join(cell(r[k], t) for k, _, t in COLUMNS) + " |" for r in rows]
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
            x, y = r.get(key), r.get("answer_correctness")
            if x is not None and y is not None:
                ax.scatter([x], [y * 100], s=60)
                ax.annotate(r["model"], (x, y * 100), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("answer correctness (%)")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def html_report(
    domain: str, rows: list[dict[str, Any]], runs: list[ModelRun], verdict: str, failures: list[str], png: bytes
) -> str:
    """One self-contained HTML page (the plot is inlined)."""
    e = html.escape
    head = "".join(f"<th>{e(c[1])}</th>" for c in COLUMNS)
    body = "".join(
        f"<tr><td>{e(r['model'])}</td>" + "".join(f"<td>{cell(r[k], t)}</td>" for k, _, t in COLUMNS) + "</tr>"
        for r in rows
    )
    inline = base64.b64encode(png).decode()
    gate = (
        "<p class=ok>Gate passed.</p>"
        if not failures
        else "<ul class=bad>" + "".join(f"<li>{e(f)}</li>" for f in failures) + "</ul>"
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Eval report: {e(domain)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
.ok{{color:#166534}}.bad{{color:#b91c1c}}details{{margin:.4em 0}}
pre{{white-space:pre-wrap;background:#f8fafc;padding:.5em}}
</style></head><body><h1>Eval report: {e(domain)}</h1><p id="verdict">{e(verdict)}</p>
<table id="metrics"><tr><th>model</th>{head}</tr>{body}</table>
<h2>Quality against cost, latency and size</h2><img id="plot" alt="quality plot" src="data:image/png;base64,{inline}">
<h2>Gate</h2>{gate}<h2>Failed questions</h2>{_failures(runs)}</body></html>"""


def _failures(runs: list[ModelRun]) -> str:
    e = html.escape
    parts = []
    for run in runs:
        bad = [o for o in run.outcomes if not _passed(o)]
        parts.append(f"<h3>{e(run.choice.label)}: {len(bad)} of {len(run.outcomes)} failed</h3>")
        for o in bad:
            why = ", ".join(_why(o))
            parts.append(
                f"<details><summary>{e(o.item.id)} ({e(why)}): {e(o.item.question)}</summary>"
                f"<p>expected: {e(o.item.expect)} {e(', '.join(o.item.expected_facts))}"
                f"{' from ' + e(o.item.source) if o.item.source else ''}</p><p>got ({e(o.kind)}):</p>"
                f"<pre>{e(o.answer)}</pre><p>retrieved:</p><pre>{e(chr(10).join(o.sources) or '(none)')}</pre>"
                "</details>"
            )
    return "\n".join(parts)


def _passed(o: Any) -> bool:
    s = o.scored
    return s.behaved and s.correct is not False and s.cited_right is not False and not s.invented


def _why(o: Any) -> list[str]:
    s = o.scored
    reasons = [] if s.behaved else [f"expected {o.item.expect}, got {o.kind}"]
    reasons += ["facts missing"] if s.correct is False and s.behaved else []
    reasons += ["wrong or no citation"] if s.cited_right is False and s.behaved else []
    reasons += [f"invented {', '.join(s.invented)}"] if s.invented else []
    reasons += ["withheld by the output guard"] if o.withheld else []
    return reasons


def answers_jsonl(runs: list[ModelRun]) -> str:
    """Every answer of every model, one JSON object a line: for scripts, and to compare runs."""
    lines = []
    for run in runs:
        for o in run.outcomes:
            row = {
                "model": run.choice.label, "id": o.item.id, "question": o.item.question, "expect": o.item.expect,
                "expected_facts": o.item.expected_facts, "kind": o.kind, "answer": o.answer, "withheld": o.withheld,
                "passed": _passed(o), "why": _why(o), "sources": o.sources,
                "ttft_s": round(o.ttft_s, 4), "total_s": round(o.total_s, 4),
            }  # fmt: skip
            lines.append(json.dumps(row, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def write(
    folder: Path,
    domain: str,
    rows: list[dict[str, Any]],
    runs: list[ModelRun],
    verdict: str,
    failures: list[str],
    html_path: Path | None = None,
) -> tuple[Path, Path]:
    """Write report.html, report.md and report.jsonl (every answer), keeping the latest copy of each in ``folder``;
    return the HTML and Markdown paths."""
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_png(rows)
    page = html_report(domain, rows, runs, verdict, failures, png)
    summary = markdown(domain, rows, verdict, failures)
    (folder / "latest.png").write_bytes(png)
    html_path = html_path or folder / "latest.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    md_path = html_path.with_suffix(".md")
    md_path.write_text(summary, encoding="utf-8")
    answers = answers_jsonl(runs)
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

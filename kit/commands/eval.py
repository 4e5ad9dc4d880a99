"""`kit eval <domain>`: the eval set through the whole pipeline, per model; report and ship gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kit.domain import load_domain


@click.command("eval")
@click.argument("domain_dir", type=click.Path())
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="SPEC",
    help="configured (default), base, tuned, embedded[:<name>], a .gguf path, or openai:<base_url>#<model>; "
    "repeatable.",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate a subset (every kind kept).")
@click.option(
    "--split",
    type=click.Choice(["all", "heldout", "dev"]),
    default="all",
    show_default=True,
    help="Which eval set: both, only the held-out set (eval.heldout), or only the development set (eval.set).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as a JSON object per model.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="HTML report path (default: <domain>/build/eval/latest.html); Markdown beside it.",
)
@click.option(
    "--gate", "use_gate", is_flag=True, help="Exit 1 when a held-out metric misses its threshold in domain.yaml."
)
@click.option(
    "--results",
    "save_results",
    is_flag=True,
    help="Also write every answer and its summary to <domain>/eval/results/<model>.jsonl and .md (to commit).",
)
@click.option("--price-per-hour", type=float, default=None, help="Hardware $/hour (default: eval.price_per_hour).")
@click.option(
    "--price-per-mtok", type=float, default=1.0, show_default=True, help="Endpoint $ per 1M tokens, for openai: models."
)
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, help="Env var with the endpoint's key.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(
    domain_dir: str,
    models: tuple[str, ...],
    limit: int | None,
    split: str,
    as_json: bool,
    report_path: str | None,
    use_gate: bool,
    save_results: bool,
    price_per_hour: float | None,
    price_per_mtok: float,
    api_key_env: str,
    quiet: bool,
) -> None:
    """Evaluate DOMAIN_DIR's assistant on its eval sets, for one or more models.

    The held-out set (eval.heldout) and the development set (eval.set) are scored
    apart, strictly (every expected fact, nothing forbidden, nothing invented, no
    junk) and leniently; --json keys them 'heldout' and 'dev'. The gate reads the
    held-out split. Eval questions that training already asks are counted as
    contaminated.

    \b
    Examples:
      kit eval domains/retail --model base --model tuned
      kit eval domains/retail --model tuned --model openai:http://127.0.0.1:8000/v1#big-model
      kit eval domains/clinic --gate --json
    """
    from kit.components.embedding import Embedder
    from kit.services.evaluation import contamination, report, results, runner, summary

    domain = load_domain(domain_dir)
    cases = runner.load_items(domain, limit, split)
    choices = [runner.choose(domain, spec, api_key_env) for spec in (models or ("configured",))]
    hourly = domain.spec.eval.price_per_hour if price_per_hour is None else price_per_hour
    overlaps = contamination.check(domain, Embedder(domain.spec.retrieval.embedding_model).embed)
    contaminated = {o.item_id: f"{o.training.place} ({o.how})" for o in overlaps}
    runs = [runner.run_model(domain, choice, cases, progress=not quiet) for choice in choices]
    rows = [summary.summarize(run, hourly, price_per_mtok, contaminated) for run in runs]
    failures = [f for row in rows for f in summary.gate(row, domain.spec.eval.thresholds)]
    verdict = summary.verdict(rows)
    html_path, md_path = report.write(
        domain.build_dir / "eval", domain.name, rows, verdict, failures, Path(report_path) if report_path else None
    )
    saved = [results.save(domain.root, domain.name, row) for row in rows] if save_results else []
    if as_json:
        metrics = {row["model"]: {k: v for k, v in row.items() if k != "results"} for row in rows}
        click.echo(json.dumps(metrics, indent=2))
    else:
        click.echo(md_path.read_text(encoding="utf-8"))
        click.echo(f"report: {html_path}")
        for jsonl, md in saved:
            click.echo(f"results: {jsonl} and {md.name}")
    if use_gate and failures:
        for failure in failures:
            click.echo(f"gate: {failure}", err=True)
        sys.exit(1)

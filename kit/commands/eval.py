"""`kit eval <domain>`: the eval set through the whole pipeline, per model; report and ship gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kit.domain import Domain, load_domain
from kit.errors import KitError


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
@click.option(
    "--safety",
    "safety_only",
    is_flag=True,
    help="Only the safety set (eval.safety) through the guardrails: per-rule recall and false positives, no model; "
    "--split dev screens its calibration split alone (tune on it), --results writes every message's result to "
    "<domain>/eval/results/safety/<embedding model>.jsonl.",
)
@click.option(
    "--calibrate",
    "fp_budget",
    type=click.FloatRange(0, 1),
    default=None,
    metavar="SHARE",
    help="With --safety: suggest each rule's threshold, the lowest at which at most SHARE (e.g. 0.005) of the "
    "calibration split's ordinary messages fire it by similarity. The held-out split is not read.",
)
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
    safety_only: bool,
    fp_budget: float | None,
) -> None:
    """Evaluate DOMAIN_DIR's assistant on its eval sets, for one or more models.

    The held-out set (eval.heldout) and the development set (eval.set) are scored
    apart, strictly (every expected fact, nothing forbidden, nothing invented, no
    junk) and leniently; --json keys them 'heldout' and 'dev'. The gate reads the
    held-out split. Eval questions that training already asks are counted as
    contaminated. With eval.safety set, the safety set is screened by the
    guardrails too (--json key 'safety'; its gate is eval.safety_gate).

    \b
    Examples:
      kit eval domains/retail --model base --model tuned
      kit eval domains/retail --model tuned --model openai:http://127.0.0.1:8000/v1#big-model
      kit eval domains/clinic --gate --json
      kit eval domains/clinic --safety --gate
      kit eval domains/clinic --safety --split dev
      kit eval domains/clinic --safety --calibrate 0.005
      kit eval domains/clinic --safety --results
    """
    from kit.components.embedding import Embedder
    from kit.services.evaluation import contamination, report, results, runner, safety, summary

    domain = load_domain(domain_dir)
    if safety_only or fp_budget is not None:
        _safety(domain, split, as_json, use_gate, fp_budget, save_results)
        return
    safety_summary = _safety_summary(domain) if domain.spec.eval.safety else None
    cases = runner.load_items(domain, limit, split)
    choices = [runner.choose(domain, spec, api_key_env) for spec in (models or ("configured",))]
    hourly = domain.spec.eval.price_per_hour if price_per_hour is None else price_per_hour
    overlaps = contamination.check(domain, Embedder(domain.spec.retrieval.embedding_model).embed)
    contaminated = {o.item_id: f"{o.training.place} ({o.how})" for o in overlaps}
    runs = [runner.run_model(domain, choice, cases, progress=not quiet) for choice in choices]
    rows = [summary.summarize(run, hourly, price_per_mtok, contaminated) for run in runs]
    failures = [f for row in rows for f in summary.gate(row, domain.spec.eval.thresholds)]
    if safety_summary is not None:
        failures += safety.gate(safety_summary, domain.spec.eval.safety_gate)
    verdict = summary.verdict(rows)
    html_path, md_path = report.write(
        domain.build_dir / "eval", domain.name, rows, verdict, failures, Path(report_path) if report_path else None
    )
    saved = [results.save(domain.root, domain.name, row) for row in rows] if save_results else []
    if as_json:
        metrics = {row["model"]: {k: v for k, v in row.items() if k != "results"} for row in rows}
        click.echo(json.dumps(metrics | ({"safety": safety_summary} if safety_summary else {}), indent=2))
    else:
        click.echo(md_path.read_text(encoding="utf-8"))
        if safety_summary is not None:
            click.echo(safety.table(safety_summary, domain))
        click.echo(f"report: {html_path}")
        for jsonl, md in saved:
            click.echo(f"results: {jsonl} and {md.name}")
    if use_gate and failures:
        for failure in failures:
            click.echo(f"gate: {failure}", err=True)
        sys.exit(1)


def _safety_summary(domain: Domain) -> dict[str, Any]:
    """The safety set through the guardrails (no model, no retrieval): per split and rule, recall and false
    positives."""
    from kit.services.evaluation import safety

    check_ids, rows = _screen_safety(domain, "all")
    return safety.summarize(rows, check_ids)


def _screen_safety(domain: Domain, split: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The check ids and the per-message result rows of the safety set's ``split`` (all, heldout, or dev: the
    calibration split)."""
    from kit.components.embedding import Embedder
    from kit.services.evaluation import safety
    from kit.services.safety.learned import screening

    guards = screening(domain, Embedder(domain.spec.retrieval.embedding_model).embed)
    _warn_if_miscalibrated(domain)
    wanted = {"all": safety.SPLITS, "heldout": ("heldout",), "dev": ("calibration",)}[split]
    items = [i for i in safety.load_safety(domain) if i.split in wanted]
    outcomes = safety.screen(guards, items)
    return [c.id for c in guards.checks], safety.result_rows(outcomes, domain.spec.retrieval.embedding_model)


def _warn_if_miscalibrated(domain: Domain) -> None:
    from kit.services.safety.guardrails import calibration_mismatch, recalibration_hint

    mismatch = calibration_mismatch(domain.spec)
    if mismatch is not None:
        hint = recalibration_hint(domain.spec, str(domain.root))
        click.echo(f"warning: {mismatch}, so kit serve, chat and ask refuse to start — {hint}", err=True)


def _safety(domain: Domain, split: str, as_json: bool, use_gate: bool, fp_budget: float | None, save: bool) -> None:
    """`kit eval --safety`: the safety set alone (``split``: all, heldout, or dev, the calibration split), its gate,
    with --results its per-message results written, and with --calibrate the suggested thresholds (the calibration
    split alone screened)."""
    from kit.components.embedding import Embedder
    from kit.services.evaluation import safety
    from kit.services.safety.learned import calibration_items, screening

    if fp_budget is not None:  # calibration reads the calibration split only, and shows nothing of the held-out one
        guards = screening(domain, Embedder(domain.spec.retrieval.embedding_model).embed)
        items = calibration_items(domain)
        outcomes = safety.screen(guards, items)
        check_ids = [c.id for c in guards.checks]
        rows = safety.result_rows(outcomes, domain.spec.retrieval.embedding_model)
        suggested = safety.calibrate(outcomes, fp_budget)
    else:
        check_ids, rows = _screen_safety(domain, split)
        suggested = None
    result = safety.summarize(rows, check_ids)
    if save:
        click.echo(f"wrote {safety.save_results(domain, rows)}", err=True)
    if as_json:
        click.echo(json.dumps(result | ({"calibrated": suggested} if suggested else {}), indent=2))
    else:
        click.echo(safety.table(result, domain))
        for cid, row in (suggested or {}).items():
            recall = "n/a" if row["calibration_recall"] is None else f"{100 * row['calibration_recall']:.1f}%"
            click.echo(f"calibrated: {cid} threshold {row['threshold']:.2f} (calibration recall {recall})")
        if suggested:
            click.echo(f"calibrated on: retrieval.thresholds_calibrated_on: {domain.spec.retrieval.embedding_model}")
    if use_gate and not result["heldout"]["items"]:  # a gate that read nothing must not pass
        raise KitError(
            "the safety gate reads the safety set's held-out split, and this run screened none of it",
            "run `kit eval --safety --gate` without --split dev",
        )
    failures = safety.gate(result, domain.spec.eval.safety_gate) if result["heldout"]["items"] else []
    if use_gate and failures:
        for failure in failures:
            click.echo(f"gate: {failure}", err=True)
        sys.exit(1)

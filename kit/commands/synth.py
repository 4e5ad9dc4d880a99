"""`kit synth <domain>`: training conversations from the domain's own documents."""

from __future__ import annotations

from pathlib import Path

import click

from kit.domain import load_domain


@click.command("synth")
@click.argument("domain_dir", type=click.Path())
@click.option(
    "--teacher", metavar="SPEC", help="openai:<base_url>#<model>: a big model writes the Q&A (default: templates)."
)
@click.option(
    "--key-env", default="KIT_TEACHER_API_KEY", show_default=True, help="Env variable with the teacher's API key."
)
@click.option(
    "--per-chunk",
    default=3,
    show_default=True,
    type=click.IntRange(1, 50),
    help="Questions per chunk and intent (teacher: per chunk).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(),
    help="Train file (default: <domain>/data/synth.jsonl); validation goes to *.val.jsonl.",
)
@click.option("--seed", default=0, show_default=True, help="Same seed, same file.")
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.5),
    help="Share held out, by group (default: training.validation_fraction).",
)
@click.option(
    "--concurrency", default=4, show_default=True, type=click.IntRange(1, 64), help="Teacher requests at once."
)
@click.option(
    "--retries",
    default=4,
    show_default=True,
    type=click.IntRange(0, 20),
    help="Retries per teacher request, with back-off.",
)
@click.option("--limit", type=click.IntRange(1), help="Only the first N chunks (a cheap first teacher run).")
@click.option(
    "--context",
    "with_context",
    is_flag=True,
    help="Put the source chunk in each user turn, as the runtime prompt does.",
)
@click.option("--fresh", is_flag=True, help="Forget earlier teacher replies and ask again.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(
    domain_dir: str, teacher: str | None, key_env: str, per_chunk: int, out: str | None, seed: int,
    val_fraction: float | None, concurrency: int, retries: int, limit: int | None, with_context: bool, fresh: bool,
    quiet: bool,
) -> None:  # fmt: skip
    """Write training conversations for DOMAIN_DIR, each grounded in the chunk it came from.

    Offline (default), questions come from templates (the domain's synth/templates.yaml over kit's
    defaults). With --teacher, a big model on any OpenAI-compatible server writes them; every answer
    whose numbers, prices, dates or identifiers are not in its chunk is dropped and counted. A killed
    teacher run resumes where it stopped.

    \b
    Examples:
      kit synth domains/retail
      kit synth domains/retail --teacher openai:http://127.0.0.1:8080/v1#qwen2.5-72b --out data/teacher.jsonl
      KIT_TEACHER_API_KEY=sk-... kit synth domains/clinic --teacher openai:https://api.example.com/v1#big-model
    """
    from kit.services.synth import DEFAULT_OUT, SynthOptions, synthesize
    from kit.services.synth.teacher import TeacherSpec

    domain = load_domain(domain_dir)
    path = Path(out) if out else domain.root / DEFAULT_OUT
    options = SynthOptions(
        out=path,
        per_chunk=per_chunk,
        seed=seed,
        val_fraction=domain.spec.training.validation_fraction if val_fraction is None else val_fraction,
        teacher=TeacherSpec.parse(teacher, key_env) if teacher else None,
        concurrency=concurrency,
        retries=retries,
        limit=limit,
        with_context=with_context,
        fresh=fresh,
        progress=not quiet,
    )
    report = synthesize(domain, options)
    summary(report)


def summary(report) -> None:  # noqa: ANN001  (SynthReport; imported lazily)
    """Kept and dropped, per intent and per source, then the files."""
    rows = [("intent", report.kept_by_intent, report.dropped_by_intent),
            ("source", report.kept_by_source, report.dropped_by_source)]  # fmt: skip
    for title, kept, dropped in rows:
        click.echo(f"{title:<40} {'kept':>6} {'dropped':>8}")
        for name in sorted(set(kept) | set(dropped)):
            click.echo(f"  {name:<38} {kept[name]:>6} {dropped[name]:>8}")
    for sample in report.drop_samples:
        click.echo(f"dropped: {sample}", err=True)
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(report.dropped.items())) or "none"
    tokens = report.prompt_tokens + report.completion_tokens
    teacher = f"; teacher: {tokens} tokens ({report.prompt_tokens} prompt), {report.retries} retries" if tokens else ""
    click.echo(
        f"kept {report.train + report.validation} conversations from {report.chunks} chunks "
        f"({report.train} train, {report.validation} validation); dropped: {why}{teacher}"
    )
    if report.failed_chunks:
        click.echo(
            f"warning: {len(report.failed_chunks)} chunks failed; run the same command again to retry them", err=True
        )
    click.echo("wrote " + ", ".join(str(p) for p in report.files))

"""`kit index <domain>`: ingest the domain's documents into its search index, incrementally."""

from __future__ import annotations

import sys

import click

from kit.domain import load_domain

EXIT_SKIPPED = 3


@click.command("index")
@click.argument("domain_dir", type=click.Path())
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def command(domain_dir: str, quiet: bool) -> None:
    """Index DOMAIN_DIR's documents for search; re-runs only embed what changed.

    Exit status: 0 all indexed, 1 error, 3 indexed but some files were skipped.

    \b
    Example:
      kit index domains/retail
    """
    from kit.services.retrieval.ingest import index_domain
    from kit.services.safety.learned import refresh

    domain = load_domain(domain_dir)
    report = index_domain(domain, progress=not quiet)
    for rel, reason in report.skipped:
        click.echo(f"warning: skipped {rel}: {reason}", err=True)
    click.echo(
        f"indexed {report.files} files into {report.chunks} chunks: {report.added} added, {report.updated} updated, "
        f"{report.removed} removed, {report.unchanged} unchanged; {len(report.skipped)} skipped "
        f"({report.seconds:.1f} s)"
    )
    trained = refresh(domain)  # the learned checks, when their training lines or encoder changed
    if trained.seconds:
        click.echo(f"trained the learned checks {', '.join(trained.classifiers)} ({trained.seconds:.1f} s)")
    if report.skipped:
        sys.exit(EXIT_SKIPPED)

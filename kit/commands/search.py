"""`kit search <domain> "<query>"`: the ranked chunks retrieval gives for a question."""

from __future__ import annotations

import json

import click

from kit.domain import load_domain
from kit.errors import KitError


def parse_filters(values: tuple[str, ...]) -> dict[str, str]:
    """``("category=tents",)`` → ``{"category": "tents"}``."""
    filters: dict[str, str] = {}
    for value in values:
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise KitError(f"filter '{value}' is not key=value", "write it like --filter category=tents")
        filters[key.strip()] = wanted.strip()
    return filters


@click.command("search")
@click.argument("domain_dir", type=click.Path())
@click.argument("query")
@click.option("-k", "k", type=click.IntRange(1, 100), default=None, help="How many results (default: retrieval.k).")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="Metadata filter, e.g. category=tents.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {text, source, score, ...}.")
def command(domain_dir: str, query: str, k: int | None, filters: tuple[str, ...], as_json: bool) -> None:
    """Search DOMAIN_DIR's index for QUERY (keyword + vector, fused).

    \b
    Examples:
      kit search domains/retail "return policy for opened items"
      kit search domains/retail "NW-TNT-0042" -k 1 --json
    """
    from kit.services.retrieval.retrieve import Retriever

    chunks = Retriever.open(load_domain(domain_dir)).retrieve(query, k, parse_filters(filters))
    if as_json:
        rows = [
            {
                "rank": n,
                "score": round(c.score, 4),
                "similarity": c.similarity,
                "source": c.source,
                "title": c.title,
                "location": c.location,
                "id": c.id,
                "metadata": c.metadata,
                "text": c.text,
            }
            for n, c in enumerate(chunks, start=1)
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not chunks:
        click.echo("no results")
    for n, c in enumerate(chunks, start=1):
        click.echo(f"[{n}] {c.score:.3f}  {c.source} ({c.location}) — {c.title}")
        click.echo("    " + c.text.replace("\n", "\n    ")[:600])

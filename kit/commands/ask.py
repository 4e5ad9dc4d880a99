"""`kit ask <domain> "<question>"`: one answer with its sources, streamed, or as JSON."""

from __future__ import annotations

import json

import click

from kit.domain import load_domain


@click.command("ask")
@click.argument("domain_dir", type=click.Path())
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: answer, sources, refused, timings.")
def command(domain_dir: str, question: str, as_json: bool) -> None:
    """Answer QUESTION with DOMAIN_DIR's documents, guardrails and model.

    \b
    Examples:
      kit ask domains/retail "What is your return window?"
      kit ask domains/retail "Do you ship to Canada?" --json
    """
    from kit.services.assistant.chat import ChatService
    from kit.services.assistant.reply import reply_json

    service = ChatService.open(load_domain(domain_dir))
    reply = service.ask(question)
    if as_json:
        reply.finish()
        click.echo(json.dumps(reply_json(reply), ensure_ascii=False, indent=2))
        return
    for piece in reply:
        click.echo(piece, nl=False)
    click.echo()
    for source in reply.sources:
        click.echo(f"  {source.label()}")

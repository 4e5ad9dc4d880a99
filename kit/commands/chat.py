"""`kit chat <domain>`: the chat UI on 127.0.0.1, or a chat in the terminal with --terminal."""

from __future__ import annotations

import click

from kit.domain import load_domain


def terminal_chat(domain_dir: str) -> None:
    """Read questions from the terminal until an empty line or end of input; history kept within n_ctx."""
    from kit.components.chat_template import ChatMessage
    from kit.services.assistant.chat import ChatService

    service = ChatService.open(load_domain(domain_dir))
    history: list[ChatMessage] = []
    click.echo(service.greeting())
    while True:
        question = click.prompt("you", default="", show_default=False, prompt_suffix="> ")
        if not question.strip():
            return
        reply = service.ask(question, history)
        for piece in reply:
            click.echo(piece, nl=False)
        click.echo()
        for source in reply.sources:
            click.echo(f"  {source.label()}")
        history += reply.history()


@click.command("chat")
@click.argument("domain_dir", type=click.Path())
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="Port of the UI.")
@click.option("--terminal", is_flag=True, help="Chat in this terminal instead of the browser.")
def command(domain_dir: str, port: int, terminal: bool) -> None:
    """Chat with DOMAIN_DIR's assistant: the web UI on http://127.0.0.1:PORT/ (or --terminal).

    \b
    Examples:
      kit chat domains/retail
      kit chat domains/retail --terminal
    """
    if terminal:
        terminal_chat(domain_dir)
        return
    from kit.commands.serve import run_server

    run_server(domain_dir, "127.0.0.1", port, None)

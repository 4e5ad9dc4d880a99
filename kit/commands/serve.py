"""`kit serve <domain>`: the chat UI at / and the OpenAI-compatible API at /v1, on 127.0.0.1 by default."""

from __future__ import annotations

import os
import socket

import click

from kit.domain import load_domain
from kit.errors import KitError

API_KEY_ENV = "KIT_API_KEY"


def check_port(host: str, port: int) -> None:
    """A clear error when the port is taken, before the models load."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise KitError(f"cannot listen on {host}:{port}: {exc.strerror}", "pass another --port") from None


def run_server(domain_dir: str, host: str, port: int, api_key: str | None) -> None:
    """Load the domain's service and serve UI and API until interrupted."""
    import uvicorn

    from kit.server import build_server
    from kit.services.chat import ChatService

    check_port(host, port)
    service = ChatService.open(load_domain(domain_dir))
    app = build_server(service, api_key)
    click.echo(f"serving {service.domain.name} on http://{host}:{port}/ (API at http://{host}:{port}/v1)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@click.command("serve")
@click.argument("domain_dir", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--api-key", default=None, help=f"Require this bearer key on /v1 (default: ${API_KEY_ENV}).")
def command(domain_dir: str, host: str, port: int, api_key: str | None) -> None:
    """Serve DOMAIN_DIR's assistant: chat UI at /, OpenAI-compatible API at /v1.

    \b
    Examples:
      kit serve domains/retail
      kit serve domains/retail --port 8000 --api-key s3cret
      curl http://127.0.0.1:7860/v1/models
    """
    run_server(domain_dir, host, port, api_key or os.environ.get(API_KEY_ENV) or None)

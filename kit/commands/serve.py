"""`kit serve <domain>`: the chat UI at / and the OpenAI-compatible API at /v1, on 127.0.0.1 by default.

Credentials come from the environment or from files (Docker secrets): ``KIT_API_KEY`` or
``KIT_API_KEY_FILE`` guard /v1; ``KIT_UI_USER`` and ``KIT_UI_PASSWORD`` (or ``KIT_UI_PASSWORD_FILE``)
put a login in front of the UI. Bound to anything but loopback, the server refuses to start without
both unless ``KIT_ALLOW_NO_AUTH=1`` says serving openly is intended. The owner's console at /admin needs
``KIT_ADMIN_PASSWORD`` (or ``KIT_ADMIN_PASSWORD_FILE``; either may hold the password or its scrypt hash); on
loopback without one a one-time token is printed with the console's URL, elsewhere the console is off.
The website widget (/widget.js) chats with ``KIT_WIDGET_KEY`` (or ``KIT_WIDGET_KEY_FILE``), a publishable key the
shop's pages carry: it can only chat, never the API key; without it the widget is off.
Limits on what a client may send and how often (``kit.server.settings.Limits``) come from ``KIT_MAX_BODY_BYTES``,
``KIT_RATE_PER_MINUTE`` and the like.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kit.domain import load_domain
from kit.errors import KitError

if TYPE_CHECKING:
    from kit.server.admin_login import AdminAccess
    from kit.server.settings import Limits

API_KEY_ENV = "KIT_API_KEY"
UI_USER_ENV = "KIT_UI_USER"
UI_PASSWORD_ENV = "KIT_UI_PASSWORD"
ALLOW_NO_AUTH_ENV = "KIT_ALLOW_NO_AUTH"
ADMIN_PASSWORD_ENV = "KIT_ADMIN_PASSWORD"
WIDGET_KEY_ENV = "KIT_WIDGET_KEY"


def check_port(host: str, port: int) -> None:
    """A clear error when the port is taken, before the models load."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise KitError(f"cannot listen on {host}:{port}: {exc.strerror}", "pass another --port") from None


def secret(name: str) -> str | None:
    """``$NAME``, else the contents of the file named by ``$NAME_FILE`` (a Docker secret), else None."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    path = os.environ.get(f"{name}_FILE", "").strip()
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise KitError(f"cannot read {name}_FILE={path}: {exc.strerror}", "mount the secret file or unset it") from None


def ui_login() -> tuple[str, str] | None:
    """The UI's (user, password) from the environment; an error when only one half is set."""
    user, password = secret(UI_USER_ENV), secret(UI_PASSWORD_ENV)
    if (user is None) != (password is None):
        raise KitError(
            f"only one of {UI_USER_ENV} and {UI_PASSWORD_ENV} is set",
            "set both to put a login in front of the UI, or neither",
        )
    return (user, password) if user and password else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_auth(host: str, api_key: str | None, login: tuple[str, str] | None) -> None:
    """Refuse to serve beyond this machine without credentials, unless that is explicitly allowed."""
    if is_loopback(host) or os.environ.get(ALLOW_NO_AUTH_ENV) == "1":
        return
    missing = [
        *([] if api_key else [f"an API key ({API_KEY_ENV})"]),
        *([] if login else [f"a UI login ({UI_USER_ENV} and {UI_PASSWORD_ENV})"]),
    ]
    if missing:
        raise KitError(
            f"refusing to serve on {host} without {' and '.join(missing)}",
            f"set them (or their *_FILE secrets), bind 127.0.0.1, or set {ALLOW_NO_AUTH_ENV}=1 to serve openly",
        )


def admin_access(host: str) -> AdminAccess | None:
    """The console's login: the password (or its hash) when set; on loopback a one-time token; else None (off)."""
    from kit.server.admin_login import AdminAccess

    password = secret(ADMIN_PASSWORD_ENV)
    if password:
        return AdminAccess.from_secret(password)
    return AdminAccess.one_time_token() if is_loopback(host) else None


def widget_key(api_key: str | None) -> str | None:
    """The widget's publishable key; an error when it repeats a secret, since every visitor of the shop can read it."""
    key = secret(WIDGET_KEY_ENV)
    if key and key in (api_key, secret(ADMIN_PASSWORD_ENV)):
        raise KitError(
            f"{WIDGET_KEY_ENV} is the same as the API key or the console password, and shop pages publish it",
            f"give {WIDGET_KEY_ENV} a value of its own: python -c 'import secrets; print(secrets.token_urlsafe())'",
        )
    return key


def prepare(host: str, port: int, api_key: str | None) -> tuple[tuple[str, str] | None, Limits]:
    """What a server settles before any model loads: the UI login, the credentials check, the limits, the port."""
    from kit.malloc import limit_arenas
    from kit.server.request_ids import log_request_ids
    from kit.server.settings import Limits

    limit_arenas()  # before the engine's and the server's threads exist
    log_request_ids()
    login = ui_login()
    check_auth(host, api_key, login)
    limits = Limits.from_env()
    check_port(host, port)
    return login, limits


def run_server(domain_dir: str, host: str, port: int, api_key: str | None) -> None:
    """Load the domain's service and serve UI and API until interrupted."""
    import uvicorn

    from kit.server.app import build_server
    from kit.services.assistant.chat import ChatService

    login, limits = prepare(host, port, api_key)
    service = ChatService.open(load_domain(domain_dir))
    admin = admin_access(host)
    widget = widget_key(api_key)
    app = build_server(service, api_key, login, limits, admin, widget)
    click.echo(f"serving {service.domain.name} on http://{host}:{port}/ (API at http://{host}:{port}/v1)")
    if admin is None:
        click.echo(f"the owner's console is off: set {ADMIN_PASSWORD_ENV} to open it at /admin/")
    elif admin.token:
        click.echo(f"owner's console: http://{host}:{port}/admin/?token={admin.token}")
    else:
        click.echo(f"owner's console: http://{host}:{port}/admin/ (password: {ADMIN_PASSWORD_ENV})")
    if widget:
        click.echo(f'website widget: <script src="http://{host}:{port}/widget.js" data-key="{widget}" defer></script>')
    else:
        click.echo(f"the website widget is off: set {WIDGET_KEY_ENV} to a publishable key of its own to turn it on")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def run_domains(domain_dirs: Sequence[str], host: str, port: int, api_key: str | None) -> None:
    """Serve several domains from one process (kit/server/multi.py) until interrupted."""
    import uvicorn

    from kit.server.multi import build_multi_server, open_domains

    login, limits = prepare(host, port, api_key)
    services, pool = open_domains(domain_dirs)
    app = build_multi_server(services, api_key, login, limits)
    names = [s.domain.name for s in services]
    click.echo(f"serving {', '.join(names)} on http://{host}:{port}/ ({len(pool.models)} model load(s)): "
               f"each UI at /<name>/, the API at http://{host}:{port}/v1 with model set to the name")  # fmt: skip
    if secret(ADMIN_PASSWORD_ENV) or secret(WIDGET_KEY_ENV):
        click.echo("the owner's console and the website widget are off with several domains: serve one for them")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@click.command("serve")
@click.argument("domain_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it.")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--api-key", default=None, help=f"Require this bearer key on /v1 (default: ${API_KEY_ENV}).")
def command(domain_dirs: tuple[str, ...], host: str, port: int, api_key: str | None) -> None:
    """Serve DOMAIN_DIR's assistant: chat UI at /, OpenAI-compatible API at /v1.

    Several DOMAIN_DIRs serve from one process: each distinct base model loads
    once and each domain's LoRA adapters are set per request; each UI is at
    /<name>/, and the API's model field names the domain (/v1/models lists them).

    Beyond 127.0.0.1 it needs an API key and a UI login ($KIT_API_KEY, $KIT_UI_USER,
    $KIT_UI_PASSWORD, or *_FILE secrets), or KIT_ALLOW_NO_AUTH=1.

    Limits (environment): KIT_RATE_PER_MINUTE and KIT_RATE_BURST per client
    (429 beyond), KIT_MAX_BUSY chat turns at once, UI and API together (a 503
    "busy, retry" beyond), KIT_QUEUE_SIZE UI requests waiting in Gradio's
    queue (503 beyond), KIT_MAX_BODY_BYTES (413 beyond),
    KIT_MAX_MESSAGES and KIT_MAX_MESSAGE_CHARS; KIT_UI_SESSIONS UI sessions
    kept in memory (the longest idle dropped beyond). KIT_WIDGET_KEY turns the
    website widget on (/widget.js; a publishable key that can only chat;
    KIT_WIDGET_RATE_PER_MINUTE and KIT_WIDGET_RATE_BURST per visitor).

    \b
    Examples:
      kit serve domains/retail
      kit serve domains/retail --port 8000 --api-key s3cret
      KIT_API_KEY=... KIT_UI_USER=shop KIT_UI_PASSWORD=... kit serve domains/retail --host 0.0.0.0
      curl http://127.0.0.1:7860/v1/models
      kit serve domains/retail domains/clinic    # UIs at /retail/ and /clinic/
    """
    key = api_key or secret(API_KEY_ENV)
    if len(domain_dirs) == 1:
        run_server(domain_dirs[0], host, port, key)
    else:
        run_domains(domain_dirs, host, port, key)

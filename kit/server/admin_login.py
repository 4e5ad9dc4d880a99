"""The login in front of the owner's console at ``/admin``: a password (plain or scrypt-hashed), or on loopback a
one-time token printed at start (as Jupyter does), then a signed session cookie.

Everything under ``/admin`` passes ``AdminGate`` (pages, Gradio's API and uploads alike): without a valid session a
browser is sent to the login form and any other client gets a 401 in the API's error format. Without an
``AdminAccess`` the console is off and ``/admin`` answers 404.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, quote, urlencode

from kit.server.guards import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    TokenBuckets,
    error_body,
    read_body,
    same_secret,
    send_json,
)

logger = logging.getLogger(__name__)

ADMIN_PATH = "/admin"
LOGIN_PATH = ADMIN_PATH + "/login"
LOGOUT_PATH = ADMIN_PATH + "/logout"
COOKIE = "kit_admin"
SESSION_S = 12 * 3600  # a login lasts a working day
HASH_PREFIX = "scrypt$"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
LOGIN_FORM_BYTES = 4096
LOGINS_PER_MINUTE = 10  # tries per client address: enough for typing errors, too few to guess a password


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<hash hex>``: what a hashed password file holds."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, **SCRYPT)
    return f"{HASH_PREFIX}{salt.hex()}${digest.hex()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        salt_hex, _ = hashed.removeprefix(HASH_PREFIX).split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    return same_secret(hash_password(password, salt), hashed)


def is_hash(value: str) -> bool:
    """A value written by ``hash_password`` (a hashed password file), rather than the password itself."""
    parts = value.removeprefix(HASH_PREFIX).split("$")
    return value.startswith(HASH_PREFIX) and len(parts) == 2 and all(len(p) >= 32 for p in parts)


@dataclass(frozen=True)
class AdminAccess:
    """Who may open the console: the holder of a password (kept hashed), or of a token made at start."""

    password_hash: str | None = None
    token: str | None = None
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)  # signs this process's sessions

    @classmethod
    def from_secret(cls, value: str) -> AdminAccess:
        """From ``KIT_ADMIN_PASSWORD`` (or its file): a scrypt hash as ``hash_password`` writes it, or the password."""
        return cls(password_hash=value if is_hash(value) else hash_password(value))

    @classmethod
    def one_time_token(cls) -> AdminAccess:
        return cls(token=secrets.token_urlsafe(24))

    def check(self, given: str) -> bool:
        if not given:
            return False
        if self.token is not None:
            return same_secret(given, self.token)
        return self.password_hash is not None and verify_password(given, self.password_hash)

    def session(self, now: float | None = None) -> str:
        expires = str(int((now or time.time()) + SESSION_S))
        return f"{expires}.{self._sign(expires)}"

    def valid_session(self, value: str, now: float | None = None) -> bool:
        expires, _, signature = value.partition(".")
        if not expires.isdigit() or int(expires) < (now or time.time()):
            return False
        return same_secret(signature, self._sign(expires))

    def _sign(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()


def under_admin(path: str) -> bool:
    return path == ADMIN_PATH or path.startswith(ADMIN_PATH + "/")


class AdminGate:
    """ASGI middleware: everything under ``/admin`` needs a session; serves the login form and the logout."""

    def __init__(self, app: ASGIApp, access: AdminAccess | None) -> None:
        self.app = app
        self.access = access
        self.tries = TokenBuckets(LOGINS_PER_MINUTE, LOGINS_PER_MINUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] not in ("http", "websocket") or not under_admin(path):
            await self.app(scope, receive, send)
            return
        if self.access is None:
            what = "the owner's console is off: this server has no KIT_ADMIN_PASSWORD"
            await send_json(send, 404, error_body(what, "not_found_error", "console_off"))
            return
        if path == LOGIN_PATH and scope["type"] == "http":
            await self.login(scope, receive, send)
            return
        if path == LOGOUT_PATH:
            await redirect(send, LOGIN_PATH, cookie=f"{COOKIE}=; Path={ADMIN_PATH}; Max-Age=0; HttpOnly")
            return
        if self.access.valid_session(cookie(scope, COOKIE)):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if self.access.check(query.get("token", [""])[0]):  # the URL printed at start
            await redirect(send, ADMIN_PATH + "/", cookie=self.cookie(scope))
            return
        if scope["type"] == "http" and scope.get("method") == "GET" and accepts_html(scope):
            await redirect(send, f"{LOGIN_PATH}?{urlencode({'next': path})}")
            return
        body = error_body("log in to the owner's console first", "invalid_request_error", "login_required")
        if scope["type"] == "http":
            await send_json(send, 401, body)
        else:
            await send({"type": "websocket.close", "code": 1008})

    async def login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET: the form. POST: the password (or token); right, a session and the console; wrong, the form again."""
        assert self.access is not None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        target = safe_next(query.get("next", [""])[0])
        if scope.get("method") != "POST":
            await send_html(send, 200, login_page(target, "", self.access.token is not None))
            return
        wait = self.tries.take(str((scope.get("client") or ("unknown",))[0]))
        if wait:
            body = error_body(f"too many logins from this address: retry in {math.ceil(wait)} s", "rate_limit_error")
            await send_json(send, 429, body, {"retry-after": str(math.ceil(wait))})
            return
        raw = await read_body(receive, LOGIN_FORM_BYTES) or b""
        form = parse_qs(raw.decode("utf-8", "replace"))
        if self.access.check(form.get("password", [""])[0]):
            await redirect(send, safe_next(form.get("next", [target])[0]), cookie=self.cookie(scope))
            return
        logger.warning("owner's console: a wrong password from %s", (scope.get("client") or ("?",))[0])
        await send_html(send, 401, login_page(target, "Wrong password.", self.access.token is not None))

    def cookie(self, scope: Scope) -> str:
        assert self.access is not None
        secure = "; Secure" if scope.get("scheme") in ("https", "wss") else ""
        attributes = f"Path={ADMIN_PATH}; Max-Age={SESSION_S}; HttpOnly; SameSite=Strict{secure}"
        return f"{COOKIE}={self.access.session()}; {attributes}"


def cookie(scope: Scope, name: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # (a malformed cookie header is no session)
                return ""
    return jar[name].value if name in jar else ""


def accepts_html(scope: Scope) -> bool:
    return any(k == b"accept" and b"text/html" in v for k, v in scope.get("headers", []))


def safe_next(target: str) -> str:
    """Where to go after logging in: a page of the console, never another site."""
    return target if under_admin(target) and target != LOGIN_PATH and "//" not in target else ADMIN_PATH + "/"


async def redirect(send: Send, location: str, cookie: str | None = None) -> None:
    headers = [(b"location", quote(location, safe="/?=&%").encode()), (b"content-length", b"0")]
    if cookie:
        headers.append((b"set-cookie", cookie.encode()))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def send_html(send: Send, status: int, page: str) -> None:
    data = page.encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def login_page(target: str, message: str, token: bool) -> str:
    label = "Token (printed by kit serve)" if token else "Password"
    note = f'<p role="alert" class="error">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Owner's console: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:12vh auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
.error{{color:#b00020}}</style></head><body><h1>Owner's console</h1>{note}
<form method="post" action="{LOGIN_PATH}"><input type="hidden" name="next" value="{html.escape(target)}">
<label for="password">{label}</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Log in</button></form></body></html>"""

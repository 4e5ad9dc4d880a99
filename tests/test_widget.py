"""The website widget on a real server: /widget.js, CORS for the listed origin only, the publishable key that only
chats and is rate-limited per visitor, the lead form; then in headless Chromium on pages served from other origins
(a listed one answers with sources and takes a lead, an unlisted one gets nothing)."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from runtime_fixtures import free_port, serve
from test_ui_browser import ARTIFACTS, browser, js, wait_for

from kit.server.admin_login import AdminAccess
from kit.server.settings import Limits
from kit.services.owner.leads import LeadStore

API_KEY, WIDGET_KEY, OWNER_PASSWORD = "api-secret", "pk-widget-test", "owner-secret"
QUESTION = "How long do I have to return an item?"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Site:
    """A shop's page on its own origin (a plain http.server on another port) with the widget's tag."""

    def __init__(self, folder: Path, server_url: str, port: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tag = f'<script src="{server_url}/widget.js" data-key="{WIDGET_KEY}" defer></script>'
        page = f"<!doctype html><html><head><title>Shop</title></head><body><h1>Our shop</h1>{tag}</body></html>"
        (folder / "index.html").write_text(page, encoding="utf-8")
        self.port = port or free_port()
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.origin = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def shop_port() -> int:
    """The port of the listed shop's page, known before the server's domain lists its origin."""
    return free_port()


def closed_domain(example_dir: Path, dest: Path, origins: list[str]) -> Path:
    """A copy of the indexed example whose team is away (today is a holiday) and whose widget serves ``origins``."""
    shutil.copytree(example_dir, dest)
    spec = yaml.safe_load((dest / "domain.yaml").read_text(encoding="utf-8"))
    today = datetime.now(UTC).date()
    holidays = [str(today + timedelta(days=d)) for d in (-1, 0, 1)]
    week = {d: ["09:00-17:00"] for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}
    spec["handoff"]["contact"]["opening_hours"] = {"timezone": "UTC", **week, "holidays": holidays}
    spec["serve"] = {"allowed_origins": origins}
    (dest / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return dest


def open_server(example_dir: Path, dest: Path, engine: Any, origins: list[str], limits: Limits) -> Iterator[str]:
    from kit.domain import load_domain
    from kit.server.app import build_server
    from kit.services.assistant.chat import ChatService

    service = ChatService.open(load_domain(closed_domain(example_dir, dest, origins)), engine=engine)
    admin = AdminAccess.from_secret(OWNER_PASSWORD)
    yield from serve(build_server(service, api_key=API_KEY, limits=limits, admin=admin, widget_key=WIDGET_KEY))


@pytest.fixture(scope="module")
def widget_server(
    example_dir: Path, engine: Any, shop_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """`kit serve`'s app with the widget on, listing the shop's origin; (its URL, the domain folder)."""
    dest = tmp_path_factory.mktemp("widget") / "example"
    limits = Limits(widget_rate_burst=1000)  # every test here is one visitor: the rate has a test of its own
    for url in open_server(example_dir, dest, engine, [f"http://127.0.0.1:{shop_port}"], limits):
        yield url, dest


def widget_headers(origin: str | None = None, key: str = WIDGET_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **({"Origin": origin} if origin else {})}


def test_widget_js_is_served_with_the_domain_theme(widget_server: tuple[str, Path]) -> None:
    url, _ = widget_server
    resp = httpx.get(f"{url}/widget.js", timeout=10)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/javascript")
    assert '"title": "Example Shop assistant"' in resp.text and '"primary": "#2563eb"' in resp.text
    assert "/*KIT_CONFIG*/" not in resp.text and "attachShadow" in resp.text


def test_only_the_listed_origin_gets_the_cors_grant(widget_server: tuple[str, Path], shop_port: int) -> None:
    url, _ = widget_server
    listed, other = f"http://127.0.0.1:{shop_port}", "http://127.0.0.1:9"
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    granted = httpx.options(f"{url}/widget/chat", headers={"Origin": listed, **ask}, timeout=10)
    assert granted.status_code == 204 and granted.headers["access-control-allow-origin"] == listed
    assert "authorization" in granted.headers["access-control-allow-headers"]
    refused = httpx.options(f"{url}/widget/chat", headers={"Origin": other, **ask}, timeout=10)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    posted = httpx.post(f"{url}/widget/chat", json=body, headers=widget_headers(other), timeout=60)
    assert posted.status_code == 403 and "access-control-allow-origin" not in posted.headers
    assert "serve.allowed_origins" in posted.json()["error"]["message"]
    # an answer to the listed origin carries the grant, an error included, so the widget can show it
    bad_lead = httpx.post(f"{url}/widget/lead", json={"name": "", "contact": "", "question": ""},
                          headers=widget_headers(listed), timeout=10)  # fmt: skip
    assert bad_lead.status_code == 400 and bad_lead.headers["access-control-allow-origin"] == listed


def test_the_publishable_key_only_chats(widget_server: tuple[str, Path]) -> None:
    url, _ = widget_server
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/v1/documents"),
                         ("POST", "/v1/documents"), ("GET", "/admin/"), ("GET", "/")):  # fmt: skip
        resp = httpx.request(method, f"{url}{path}", headers=widget_headers(), timeout=10)
        assert resp.status_code == 403, path
        assert resp.json()["error"]["code"] == "widget_key_only_chats"
    # and the API key is no widget key: the widget's routes refuse it
    body = {"messages": [{"role": "user", "content": QUESTION}]}
    resp = httpx.post(f"{url}/widget/chat", json=body, headers=widget_headers(key=API_KEY), timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_widget_key"


def test_an_emergency_rule_outside_hours_keeps_its_response(widget_server: tuple[str, Path]) -> None:
    url, _ = widget_server
    body = {"messages": [{"role": "user", "content": "here is my card 4111 1111 1111 1111, and I want a real person"}]}
    with httpx.stream("POST", f"{url}/widget/chat", json=body, headers=widget_headers(), timeout=60) as resp:
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-2])
    assert last["kit"]["kind"] == "rule" and last["kit"]["rule"] == "card_numbers" and not last["kit"]["lead_form"]
    handoff = {"messages": [{"role": "user", "content": "I want a real person"}]}
    with httpx.stream("POST", f"{url}/widget/chat", json=handoff, headers=widget_headers(), timeout=60) as resp:
        events = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-2])
    assert last["kit"]["kind"] == "handoff" and last["kit"]["lead_form"]


def test_the_lead_form_stores_a_good_lead_and_refuses_a_bad_one(widget_server: tuple[str, Path]) -> None:
    url, domain = widget_server
    store = LeadStore.beside(domain / "build" / "feedback.sqlite3")
    before = len(store.leads())
    bad = {"name": " ", "contact": "call me maybe", "question": "Where is my order?"}
    resp = httpx.post(f"{url}/widget/lead", json=bad, headers=widget_headers(), timeout=10)
    message = resp.json()["error"]["message"]
    assert resp.status_code == 400 and "your name is empty" in message
    assert "'call me maybe' is neither an e-mail address nor a phone number" in message
    assert len(store.leads()) == before
    good = {"name": "Ada Lovelace", "contact": "ada@example.org", "question": "Where is my order?"}
    resp = httpx.post(f"{url}/widget/lead", json=good, headers=widget_headers(), timeout=10)
    assert resp.status_code == 201
    lead = store.leads()[0]
    assert (lead["name"], lead["contact"], lead["question"]) == (
        "Ada Lovelace",
        "ada@example.org",
        "Where is my order?",
    )
    assert "Ada Lovelace,ada@example.org,Where is my order?" in store.csv_text()


def test_each_visitor_is_rate_limited_on_the_widget(example_dir: Path, engine: Any, tmp_path: Path) -> None:
    limits = Limits(widget_rate_per_minute=1, widget_rate_burst=2)
    for url in open_server(example_dir, tmp_path / "example", engine, [], limits):
        lead = {"name": "A", "contact": "+1 555 0100 22", "question": "?"}
        codes = [httpx.post(f"{url}/widget/lead", json=lead, headers=widget_headers(), timeout=10) for _ in range(3)]
        assert [c.status_code for c in codes] == [201, 201, 429]
        assert int(codes[-1].headers["retry-after"]) > 0
        # the page and the API are not the widget's: the visitor's widget bucket does not limit them
        assert httpx.get(f"{url}/widget.js", timeout=10).status_code == 200


def shadow(cdp: Any, expression: str) -> Any:
    """Evaluate ``expression`` with ``root`` bound to the widget's shadow root."""
    return js(
        cdp, f"(() => {{ const root = document.getElementById('kit-widget').shadowRoot; return {expression}; }})()"
    )


def evaluate_async(cdp: Any, expression: str) -> Any:
    """The value of a promise ``expression`` evaluates to."""
    result = cdp("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
    return result.get("result", {}).get("value")


def key(cdp: Any, name: str, code: int, text: str = "") -> None:
    event = {"key": name, "code": name, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
    cdp("Input.dispatchKeyEvent", type="keyDown", **({"text": text} if text else {}), **event)
    cdp("Input.dispatchKeyEvent", type="keyUp", **event)


def type_and_enter(cdp: Any, text: str) -> None:
    cdp("Input.insertText", text=text)
    key(cdp, "Enter", 13, "\r")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_the_widget_answers_on_another_origin_and_takes_a_lead(
    widget_server: tuple[str, Path], shop_port: int, tmp_path: Path
) -> None:
    url, domain = widget_server
    site = Site(tmp_path / "site", url, shop_port)  # the origin domain.yaml lists
    try:
        with browser(tmp_path / "profile") as cdp:
            cdp("Page.navigate", url=f"http://127.0.0.1:{shop_port}/")
            wait_for(lambda: js(cdp, "!!document.getElementById('kit-widget')"), 60)
            # keyboard only: focus the bubble, Enter opens the panel with the focus in the question box
            shadow(cdp, "root.querySelector('.bubble').focus()")
            key(cdp, "Enter", 13, "\r")
            wait_for(lambda: shadow(cdp, "root.activeElement && root.activeElement.id") == "kit-question", 10)
            assert shadow(cdp, "root.querySelector('.bubble').getAttribute('aria-expanded')") == "true"
            type_and_enter(cdp, QUESTION)
            wait_for(lambda: shadow(cdp, "root.querySelectorAll('.sources li').length"), 180)
            sources = shadow(cdp, "root.querySelector('.sources').innerText")
            answer = shadow(cdp, "[...root.querySelectorAll('.msg.bot')].pop().innerText")
            shot = base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"])
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "widget-answer.png").write_bytes(shot)
            # a hand-off while the team is away: the lead form, filled in and sent
            shadow(cdp, "root.getElementById('kit-question').focus()")
            type_and_enter(cdp, "I want a real person")
            wait_for(lambda: shadow(cdp, "!!root.querySelector('form.lead')"), 60)
            shadow(cdp, "root.querySelector('form.lead [name=name]').focus()")
            cdp("Input.insertText", text="Grace Hopper")
            shadow(cdp, "root.querySelector('form.lead [name=contact]').focus()")
            cdp("Input.insertText", text="not a contact")
            key(cdp, "Enter", 13, "\r")
            wait_for(lambda: "neither an e-mail" in (shadow(cdp, "root.querySelector('form.lead .status').innerText")
                                                    or ""), 30)  # fmt: skip
            shadow(cdp, "root.querySelector('form.lead [name=contact]').value = 'grace@example.org'")
            shadow(cdp, "root.querySelector('form.lead button').click()")
            wait_for(lambda: not shadow(cdp, "!!root.querySelector('form.lead')"), 30)
            page = shadow(cdp, "root.querySelector('.log').innerText")
            (ARTIFACTS / "widget-lead.png").write_bytes(
                base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"])
            )
            key(cdp, "Escape", 27)  # closes the panel, the focus back on the bubble
            wait_for(lambda: shadow(cdp, "root.querySelector('.panel').hidden"), 10)
            assert shadow(cdp, "root.activeElement && root.activeElement.className") == "bubble"
    finally:
        site.close()
    assert "docs/policies.md" in sources and answer.strip()
    assert shot.startswith(b"\x89PNG")
    assert "back" in page and "Thank you" in page
    stored = LeadStore.beside(domain / "build" / "feedback.sqlite3").leads()[0]
    assert stored["name"] == "Grace Hopper" and stored["contact"] == "grace@example.org"
    assert stored["question"] == "I want a real person" and stored["conversation"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_a_page_from_an_unlisted_origin_gets_nothing(widget_server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = widget_server
    site = Site(tmp_path / "site", url)  # a free port that domain.yaml does not list
    try:
        with browser(tmp_path / "profile") as cdp:
            cdp("Page.navigate", url=site.origin + "/")
            wait_for(lambda: js(cdp, "!!document.getElementById('kit-widget')"), 60)
            shadow(cdp, "root.querySelector('.bubble').click()")
            shadow(cdp, "root.getElementById('kit-question').focus()")
            type_and_enter(cdp, QUESTION)
            wait_for(lambda: shadow(cdp, "!!root.querySelector('.msg.error')"), 60)
            error = shadow(cdp, "root.querySelector('.msg.error').innerText")
            # the page's own fetch, outside the widget, is refused by the browser too
            fetched = evaluate_async(
                cdp,
                f"""fetch('{url}/widget/chat', {{method: 'POST', headers: {{'Authorization':
                'Bearer {WIDGET_KEY}', 'Content-Type': 'application/json'}}, body: '{{}}'}})
                .then(() => 'answered', e => 'refused: ' + e.name)""",
            )
    finally:
        site.close()
    assert "Failed to fetch" in error
    assert fetched == "refused: TypeError"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_the_chat_ui_offers_the_lead_form_outside_hours(widget_server: tuple[str, Path], tmp_path: Path) -> None:
    url, domain = widget_server
    fields = "[...document.querySelectorAll('#kit-lead textarea, #kit-lead input')]"
    with browser(tmp_path / "profile") as cdp:
        cdp("Page.navigate", url=url + "/")
        wait_for(lambda: js(cdp, "!!document.querySelector('textarea')"), 60)
        assert not js(cdp, "!!document.querySelector('#kit-lead textarea')")  # hidden until a hand-off
        js(cdp, "document.querySelector('textarea').focus()")
        type_and_enter(cdp, "Can I talk to a real person about my order?")
        wait_for(lambda: js(cdp, f"{fields}.length") == 3, 60)
        assert "back on" in js(cdp, "document.body.innerText") or "back tomorrow" in js(cdp, "document.body.innerText")
        assert js(cdp, f"{fields}[2].value") == "Can I talk to a real person about my order?"
        for i, text in ((0, "Alan Turing"), (1, "nobody@nowhere")):
            js(cdp, f"{fields}[{i}].focus()")
            cdp("Input.insertText", text=text)
        js(cdp, "document.querySelector('#kit-lead button').click()")
        status = "document.getElementById('kit-lead-status').innerText"
        wait_for(lambda: "neither an e-mail" in (js(cdp, status) or ""), 30)
        js(cdp, f"{fields}[1].select()")
        cdp("Input.insertText", text="+44 20 7946 0958")
        js(cdp, "document.querySelector('#kit-lead button').click()")
        wait_for(lambda: "Thank you" in (js(cdp, status) or ""), 30)
        wait_for(lambda: js(cdp, f"{fields}.length") == 0, 10)  # the form closes
    lead = LeadStore.beside(domain / "build" / "feedback.sqlite3").leads()[0]
    assert [lead["name"], lead["contact"]] == ["Alan Turing", "+44 20 7946 0958"]
    assert lead["question"] == "Can I talk to a real person about my order?" and lead["conversation"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_the_owner_sees_the_leads_and_exports_them_as_csv(widget_server: tuple[str, Path], tmp_path: Path) -> None:
    url, domain = widget_server
    store = LeadStore.beside(domain / "build" / "feedback.sqlite3")
    store.add("Katherine Johnson", "kj@example.org", '=HYPERLINK("http://x") do you ship to Hampton?')
    with browser(tmp_path / "profile") as cdp:
        cdp("Page.navigate", url=url + "/admin/")
        wait_for(lambda: js(cdp, "!!document.querySelector('#password')"), 60)
        js(
            cdp,
            f"document.querySelector('#password').value = {OWNER_PASSWORD!r}; document.querySelector('form').submit()",
        )
        leads_tab = "[...document.querySelectorAll('button[role=tab]')].find(b => b.innerText.trim() === 'Leads')"
        wait_for(lambda: js(cdp, f"!!{leads_tab}"), 90)
        js(cdp, f"{leads_tab}.click()")
        wait_for(lambda: "Katherine Johnson" in (js(cdp, "document.querySelector('#kit-leads').innerText") or ""), 30)
        js(cdp, "[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Export as CSV').click()")
        link = "document.querySelector('#kit-leads-csv a')"
        wait_for(lambda: js(cdp, f"!!{link}"), 30)
        (ARTIFACTS / "console-leads.png").write_bytes(
            base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"])
        )
        csv_text = evaluate_async(cdp, f"fetch({link}.href).then(r => r.text())")
    assert csv_text.startswith("id,created,name,contact,question,conversation")
    assert "Katherine Johnson,kj@example.org" in csv_text
    assert "'=HYPERLINK" in csv_text  # a formula is written as text


def test_serve_refuses_a_widget_key_that_repeats_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from kit.commands.serve import widget_key
    from kit.errors import KitError

    monkeypatch.delenv("KIT_WIDGET_KEY", raising=False)
    monkeypatch.delenv("KIT_WIDGET_KEY_FILE", raising=False)
    assert widget_key(API_KEY) is None  # no key: the widget is off
    monkeypatch.setenv("KIT_WIDGET_KEY", API_KEY)
    with pytest.raises(KitError, match="KIT_WIDGET_KEY is the same as the API key"):
        widget_key(API_KEY)
    monkeypatch.setenv("KIT_ADMIN_PASSWORD", "pk-shared")
    monkeypatch.setenv("KIT_WIDGET_KEY", "pk-shared")
    with pytest.raises(KitError, match="give KIT_WIDGET_KEY a value of its own"):
        widget_key(API_KEY)
    monkeypatch.setenv("KIT_WIDGET_KEY", WIDGET_KEY)
    assert widget_key(API_KEY) == WIDGET_KEY

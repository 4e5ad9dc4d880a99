"""The owner's console and the documents API on a real server (real model, real chromadb): the login in front of
/admin, documents changed over /v1/documents and served by the next answer without a restart, bad uploads refused
with nothing changed, and questions during a re-index answered from the previous index."""

from __future__ import annotations

import base64
import io
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from runtime_fixtures import ROOT, indexed_copy, serve

from kit.server.admin_login import AdminAccess, hash_password
from kit.server.settings import Limits
from kit.services.retrieval import documents as documents_module
from kit.services.retrieval.ingest import manifest_path

PASSWORD = "owner-secret"
KEY = "docs-key"
GIFT = b"""# Gift wrapping

Every order can be gift wrapped for 4.50 USD. Choose gift wrapping at checkout and the parcel gets a handwritten card.
"""
LOYALTY = b"# Loyalty card\n\nEvery tenth order ships free with the Example Shop loyalty card.\n"
GIFT_QUESTION = "Can you gift wrap my order?"


@dataclass
class Console:
    url: str
    service: Any
    root: Path


def shop_with_a_folder(dest: Path) -> Path:
    """The example shop with a folder of documents (docs/more) among its sources, where uploads go."""
    (dest / "docs" / "more").mkdir(parents=True)
    (dest / "docs" / "more" / "loyalty.md").write_bytes(LOYALTY)
    spec = yaml.safe_load((dest / "domain.yaml").read_text(encoding="utf-8"))
    spec["retrieval"]["sources"].append({"path": "docs/more"})
    (dest / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Console]:
    """`kit serve`'s app with the console on (a password) and the documents API (a key), on a domain of its own."""

    from kit.domain import load_domain
    from kit.server.app import build_server
    from kit.services.assistant.chat import ChatService

    base = tmp_path_factory.mktemp("console")
    staged = shutil.copytree(
        ROOT / "data_templates" / "example", base / "staged", ignore=shutil.ignore_patterns("build")
    )
    root = indexed_copy(shop_with_a_folder(staged), base / "shop")
    service = ChatService.open(load_domain(root), engine=engine)
    app = build_server(
        service, api_key=KEY, limits=Limits(max_body_bytes=64_000), admin=AdminAccess.from_secret(PASSWORD)
    )
    for url in serve(app):
        yield Console(url, service, root)


def api(console: Console) -> httpx.Client:
    return httpx.Client(base_url=console.url, headers={"authorization": f"Bearer {KEY}"}, timeout=120)


def sources(console: Console, question: str) -> list[str]:
    """The documents the served answer to ``question`` retrieved, from the API's completion."""
    body = {"messages": [{"role": "user", "content": question}]}
    reply = api(console).post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    return [s["source"] for s in reply.json()["sources"]]


def retrieved(console: Console, question: str) -> list[str]:
    """The documents the serving retriever finds for ``question`` (without asking the model)."""
    return [c.source for c in console.service.retriever.retrieve(question)]


def listed(console: Console) -> list[str]:
    return [d["path"] for d in api(console).get("/v1/documents").json()["data"]]


def test_the_console_needs_a_login(console: Console) -> None:
    page = httpx.get(console.url + "/admin/", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/admin/login")
    assert httpx.get(console.url + "/admin/gradio_api/info").status_code == 401  # the console's own API too
    with httpx.Client(base_url=console.url) as browser:
        wrong = browser.post("/admin/login", data={"password": "guess"})
        assert wrong.status_code == 401 and "Wrong password" in wrong.text
        assert browser.get("/admin/").status_code == 401
        right = browser.post("/admin/login", data={"password": PASSWORD}, follow_redirects=True)
        assert right.status_code == 200 and "kit-documents" in right.text  # the Documents tab
        assert browser.get("/admin/gradio_api/info").status_code == 200
        browser.get("/admin/logout")
        assert browser.get("/admin/gradio_api/info").status_code == 401
    assert httpx.get(console.url + "/").status_code == 200  # the customers' UI needs no console login


def test_password_guessing_is_slowed_to_ten_tries_a_minute(console: Console) -> None:
    from kit.server.admin_login import LOGINS_PER_MINUTE

    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")  # another client address: the others' tries stay theirs
    with httpx.Client(base_url=console.url, transport=elsewhere) as guesser:
        answers = [guesser.post("/admin/login", data={"password": f"guess{n}"}) for n in range(LOGINS_PER_MINUTE + 1)]
    assert [a.status_code for a in answers] == [401] * LOGINS_PER_MINUTE + [429]
    assert int(answers[-1].headers["retry-after"]) >= 1 and "too many logins" in answers[-1].json()["error"]["message"]
    assert (
        httpx.post(console.url + "/admin/login", data={"password": "guess"}).status_code == 401
    )  # others: still tries


def test_a_hashed_password_and_the_start_token_log_in() -> None:
    hashed = AdminAccess.from_secret(hash_password(PASSWORD))
    assert hashed.check(PASSWORD) and not hashed.check(PASSWORD + "x") and not hashed.check("")
    token = AdminAccess.one_time_token()
    assert token.token and token.check(token.token) and not token.check(PASSWORD)
    assert token.valid_session(token.session()) and not AdminAccess.one_time_token().valid_session(token.session())


def test_without_access_the_console_is_off(served: Any) -> None:
    answer = httpx.get(served.url + "/admin/", headers={"accept": "text/html"})
    assert answer.status_code == 404 and "KIT_ADMIN_PASSWORD" in answer.json()["error"]["message"]


def test_the_documents_api_needs_the_key(console: Console) -> None:
    assert httpx.get(console.url + "/v1/documents").status_code == 401
    assert httpx.post(console.url + "/v1/documents", files={"file": ("a.md", GIFT)}).status_code == 401
    assert httpx.delete(console.url + "/v1/documents/docs/more/loyalty.md").status_code == 401
    assert (console.root / "docs/more/loyalty.md").is_file()


def test_an_upload_is_answered_from_at_once_and_a_delete_stops_it(console: Console) -> None:
    before = console.service.retriever
    assert "docs/more/gift-wrapping.md" not in retrieved(console, GIFT_QUESTION)
    added = api(console).post("/v1/documents", files={"file": ("gift-wrapping.md", GIFT)})
    assert added.status_code == 201, added.text
    assert added.json()["path"] == "docs/more/gift-wrapping.md" and added.json()["index"]["added"] >= 1
    assert "docs/more/gift-wrapping.md" in listed(console)
    assert console.service.retriever is not before  # swapped, not restarted
    assert "docs/more/gift-wrapping.md" in sources(console, GIFT_QUESTION)
    gone = api(console).delete("/v1/documents/docs/more/gift-wrapping.md")
    assert gone.status_code == 200 and gone.json()["index"]["removed"] >= 1
    assert not (console.root / "docs/more/gift-wrapping.md").exists()
    assert "docs/more/gift-wrapping.md" not in listed(console)
    assert "docs/more/gift-wrapping.md" not in sources(console, GIFT_QUESTION)


BAD = [
    ({"file": ("prices.exe", b"MZ\x90\x00")}, {}, 415, "unsupported file type '.exe'"),
    ({"file": ("escape.md", GIFT)}, {"path": "../escape.md"}, 400, "leaves the domain folder"),
    ({"file": ("abs.md", GIFT)}, {"path": "/etc/kit.md"}, 400, "leaves the domain folder"),
    ({"file": ("catalogue.csv", b"sku,name\nA-1,Tent\nA-1,Stove\n")}, {}, 422, "required column"),
    ({"file": ("notes.md", b"\xff\xfe not utf-8")}, {}, 422, "not UTF-8"),
    ({"file": ("empty.md", b"")}, {}, 422, "empty file"),
    ({"file": ("huge.md", b"# Big\n\n" + b"words " * 20_000)}, {}, 413, "larger than 64000 bytes"),
    ({"file": ("faq.jsonl", b'{"question": "Hi?"}\n')}, {}, 422, "faq.jsonl"),
    ({}, {"path": "docs/more/x.md"}, 400, "multipart field 'file'"),
]


@pytest.mark.parametrize(("files", "data", "status", "named"), BAD, ids=[b[3][:20] for b in BAD])
def test_a_bad_upload_is_a_4xx_naming_the_problem_and_changes_nothing(
    console: Console, files: dict, data: dict, status: int, named: str
) -> None:
    docs, manifest = listed(console), manifest_path(console.service.domain).read_bytes()
    catalogue, serving = (console.root / "docs/catalogue.csv").read_bytes(), console.service.retriever
    answer = api(console).post("/v1/documents", files=files or None, data=data)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert named in error["message"] + " ".join(error.get("problems", [])) and error["type"] == "invalid_request_error"
    assert listed(console) == docs and manifest_path(console.service.domain).read_bytes() == manifest
    assert (console.root / "docs/catalogue.csv").read_bytes() == catalogue and console.service.retriever is serving
    assert not list(console.root.glob("docs/**/.*.tmp*")) and not (console.root.parent / "escape.md").exists()


def test_new_prices_go_live_even_when_they_make_an_eval_item_stale(console: Console) -> None:
    """A shop pushing its new catalogue is not held back by its own eval set: the upload is served and says which
    eval items no longer match (kit validate still reports them until the eval set catches up)."""
    path = console.root / "docs/catalogue.csv"
    old = path.read_bytes()
    try:
        reply = api(console).post("/v1/documents", files={"file": ("catalogue.csv", old.replace(b"32.00", b"34.00"))})
        assert reply.status_code == 201, reply.text
        stale = reply.json()["warnings"]
        assert any("eval/eval.jsonl:1" in w and "'32.00'" in w for w in stale), stale
        assert "34.00" in console.service.retriever.retrieve("What does the folding lantern cost?")[0].text
    finally:
        assert api(console).post("/v1/documents", files={"file": ("catalogue.csv", old)}).json()["warnings"] == []


def test_a_document_named_in_domain_yaml_is_replaced_not_deleted(console: Console) -> None:
    refused = api(console).delete("/v1/documents/docs/policies.md")
    assert refused.status_code == 409 and "domain.yaml" in refused.json()["error"]["message"]
    assert api(console).delete("/v1/documents/docs/more/nothing.md").status_code == 404
    assert (console.root / "docs/policies.md").is_file()


def test_questions_during_a_reindex_are_answered_from_the_previous_index(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    built, go_on = threading.Event(), threading.Event()
    real = documents_module.index_domain

    def index_then_hold(*args: Any, **kwargs: Any) -> Any:  # the real re-index, held before the swap
        report = real(*args, **kwargs)
        built.set()
        go_on.wait(timeout=120)
        return report

    monkeypatch.setattr(documents_module, "index_domain", index_then_hold)
    new_loyalty = b"# Loyalty card\n\nThe loyalty card gives gift wrapping for free on every order.\n"
    upload: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: upload.update(r=api(console).post(
        "/v1/documents", files={"file": ("gift-wrapping.md", GIFT)})))  # fmt: skip
    worker.start()
    try:
        assert built.wait(timeout=120)
        # The new chunks are in the store and the manifest, but the serving retriever is the previous one.
        assert "docs/more/gift-wrapping.md" not in sources(console, GIFT_QUESTION)
        assert all(c.source != "docs/more/gift-wrapping.md" for c in console.service.retriever.chunks)
        assert console.service.retriever.retrieve("loyalty card tenth order")[0].source == "docs/more/loyalty.md"
    finally:
        go_on.set()
        worker.join(timeout=120)
    assert upload["r"].status_code == 201
    assert "docs/more/gift-wrapping.md" in retrieved(console, GIFT_QUESTION)
    # A replace: while it is held the old text is still found, by keyword and by vector; after it, only the new.
    built.clear()
    go_on.clear()
    worker = threading.Thread(target=lambda: upload.update(r=api(console).post(
        "/v1/documents", files={"file": ("loyalty.md", new_loyalty)})))  # fmt: skip
    worker.start()
    try:
        assert built.wait(timeout=120)
        old = console.service.retriever.retrieve("Every tenth order ships free")
        assert "tenth order" in old[0].text and old[0].similarity is not None  # its vector is still in the store
    finally:
        go_on.set()
        worker.join(timeout=120)
    assert upload["r"].status_code == 201, upload["r"].text
    texts = [c.text for c in console.service.retriever.retrieve("loyalty card")]
    assert any("free on every order" in t for t in texts) and not any("tenth order" in t for t in texts)
    api(console).delete("/v1/documents/docs/more/gift-wrapping.md")


def test_a_failed_reindex_puts_everything_back(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    real = documents_module.index_domain

    def index_then_fail(*args: Any, **kwargs: Any) -> Any:  # the manifest is already new when it fails
        real(*args, **kwargs)
        raise OSError("disk went away")

    monkeypatch.setattr(documents_module, "index_domain", index_then_fail)
    docs, manifest = listed(console), manifest_path(console.service.domain).read_bytes()
    serving, loyalty = console.service.retriever, (console.root / "docs/more/loyalty.md").read_bytes()
    for name in ("loyalty.md", "new-page.md"):  # a replace, an addition
        failed = api(console).post("/v1/documents", files={"file": (name, GIFT)})
        assert failed.status_code == 500 and "nothing changed" in failed.json()["error"]["message"]
    assert listed(console) == docs and manifest_path(console.service.domain).read_bytes() == manifest
    assert (console.root / "docs/more/loyalty.md").read_bytes() == loyalty and console.service.retriever is serving
    assert not (console.root / "docs/more/new-page.md").exists()


GIFT_CARDS = b"""# Gift cards

Example Shop gift cards come in 25, 50 and 100 USD, are sent by e-mail within an hour and never expire.
"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_an_owner_uploads_a_policy_in_the_browser_and_a_customer_is_answered_from_it(
    console: Console, tmp_path: Path
) -> None:
    from test_ui_browser import ARTIFACTS, browser, js, wait_for

    policy = tmp_path / "gift-cards.md"
    policy.write_bytes(GIFT_CARDS)
    with browser(tmp_path / "profile") as cdp:
        cdp("Page.navigate", url=console.url + "/admin/")
        wait_for(lambda: js(cdp, "!!document.querySelector('#password')"), 60)  # sent to the login form
        js(cdp, f"document.querySelector('#password').value = {PASSWORD!r}; document.querySelector('form').submit()")
        wait_for(lambda: js(cdp, "!!document.querySelector('#kit-doc-file input[type=file]')"), 90)
        root = cdp("DOM.getDocument", depth=-1)["root"]["nodeId"]
        node = cdp("DOM.querySelector", nodeId=root, selector="#kit-doc-file input[type=file]")["nodeId"]
        cdp("DOM.setFileInputFiles", nodeId=node, files=[str(policy)])
        wait_for(lambda: "gift-cards.md" in (js(cdp, "document.querySelector('#kit-doc-file').innerText") or ""), 60)
        js(cdp, "document.querySelector('#kit-doc-upload').click()")
        progress = "document.querySelector('#kit-doc-progress').innerText"
        wait_for(lambda: "answers from the new index" in (js(cdp, progress) or ""), 120)  # the re-index is served
        wait_for(lambda: "docs/more/gift-cards.md" in (js(cdp, "document.body.innerText") or ""), 30)
        shot = base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"])
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "console-documents.png").write_bytes(shot)
        assert "upload docs/more/gift-cards.md" in js(cdp, progress)

        cdp("Page.navigate", url=console.url + "/")  # a customer, on the same running server
        wait_for(lambda: js(cdp, "!!document.querySelector('textarea')"), 60)
        js(cdp, "document.querySelector('textarea').focus()")
        cdp("Input.insertText", text="Do you sell gift cards?")
        enter = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
        cdp("Input.dispatchKeyEvent", type="keyDown", text="\r", **enter)
        cdp("Input.dispatchKeyEvent", type="keyUp", **enter)
        wait_for(lambda: "answer in" in (js(cdp, "document.body.innerText") or ""), 180)
        sources = js(cdp, "document.querySelector('#kit-sources').innerText")
    assert shot.startswith(b"\x89PNG") and "docs/more/gift-cards.md" in sources
    assert (console.root / "docs/more/gift-cards.md").read_bytes() == GIFT_CARDS


def test_kit_serve_opens_the_console_with_a_password_a_hash_or_on_loopback_a_token(
    run_kit: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kit.commands.serve import admin_access

    monkeypatch.delenv("KIT_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("KIT_ADMIN_PASSWORD_FILE", raising=False)
    assert admin_access("0.0.0.0") is None  # beyond loopback without a password: off
    token = admin_access("127.0.0.1")
    assert token is not None and token.token and token.check(token.token)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    made = run_kit("admin-password")
    assert made.code == 0 and PASSWORD not in made.out
    (tmp_path / "admin-password").write_text(made.out, encoding="utf-8")
    monkeypatch.setenv("KIT_ADMIN_PASSWORD_FILE", str(tmp_path / "admin-password"))
    hashed = admin_access("0.0.0.0")
    assert hashed is not None and hashed.token is None and hashed.check(PASSWORD) and not hashed.check("nope")
    monkeypatch.setenv("KIT_ADMIN_PASSWORD", "plain-pw")
    plain = admin_access("0.0.0.0")
    assert plain is not None and plain.check("plain-pw") and not plain.check(PASSWORD)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    empty = run_kit("admin-password")
    assert empty.code != 0 and "error: the password is empty" in empty.err


def test_the_documents_tab_shows_why_an_upload_was_refused(console: Console, tmp_path: Path) -> None:
    import time

    from kit.services.retrieval.documents import DocumentService
    from kit.ui.admin.documents import DocumentsTab, progress_markdown

    tab = DocumentsTab(DocumentService(console.service))
    bad = tmp_path / "catalogue.csv"
    bad.write_bytes(b"sku,name\nA-1,Tent\n")
    table = tab.table()
    tab.upload(str(bad), "")
    deadline = time.monotonic() + 60
    while tab.documents.progress.state not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    shown = progress_markdown(tab.documents.progress)
    assert "upload docs/catalogue.csv" in shown and "not done, nothing changed" in shown
    assert "required column 'price' is missing" in shown and tab.table() == table
    assert "Choose a file" in tab.upload(None, "")[1]

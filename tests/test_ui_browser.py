"""The chat UI in headless Chromium: type a question, see the streamed answer and its sources, keep a screenshot.

Driven over the Chrome DevTools Protocol (websockets), so no browser driver package is needed. The
screenshot is kept as a test artifact in build/test-artifacts/ui-answer.png.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from runtime_fixtures import ROOT, Served

from kit.services.owner.feedback import FeedbackStore

ARTIFACTS = ROOT / "build" / "test-artifacts"
QUESTION = "How long do I have to return an item?"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1280,900"]  # fmt: skip


@contextmanager
def browser(profile: Path) -> Iterator[Callable[..., Any]]:
    """Headless Chromium on a free debugging port; yields ``cdp(method, **params)`` on its first page."""
    from websockets.sync.client import connect

    proc = subprocess.Popen(["chromium", *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(port_file.exists, 60)
        port = port_file.read_text().split()[0]
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json", timeout=10).json() if t["type"] == "page"]
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
            ids = itertools.count(1)

            def cdp(method: str, **params: Any) -> Any:
                call = next(ids)
                ws.send(json.dumps({"id": call, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=60))
                    if message.get("id") == call:
                        return message.get("result", {})

            yield cdp
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {seconds} s")


def js(cdp: Callable[..., Any], expression: str) -> Any:
    return cdp("Runtime.evaluate", expression=expression, returnByValue=True).get("result", {}).get("value")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (see README, Tests)")
def test_the_ui_answers_in_a_real_browser_with_sources(served: Served, tmp_path: Path) -> None:
    with browser(tmp_path / "profile") as cdp:
        cdp("Page.navigate", url=served.url + "/")
        wait_for(lambda: js(cdp, "!!document.querySelector('textarea')"), 60)
        js(cdp, "document.querySelector('textarea').focus()")
        cdp("Input.insertText", text=QUESTION)
        enter = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
        cdp("Input.dispatchKeyEvent", type="keyDown", text="\r", **enter)
        cdp("Input.dispatchKeyEvent", type="keyUp", **enter)
        try:
            wait_for(lambda: "answer in" in (js(cdp, "document.body.innerText") or ""), 180)
        finally:
            page = js(cdp, "document.body.innerText")
            shot = base64.b64decode(cdp("Page.captureScreenshot", format="png")["data"])
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "ui-answer.png").write_bytes(shot)
            (ARTIFACTS / "ui-answer.txt").write_text(page or "", encoding="utf-8")
    assert shot.startswith(b"\x89PNG") and len(shot) > 10_000
    assert QUESTION in page and "docs/policies.md" in page and "Example Shop assistant" in page
    stored = [r for r in FeedbackStore.for_domain(served.service.domain.build_dir).turns() if r["question"] == QUESTION]
    words = re.findall(r"[A-Za-z0-9]{3,}", stored[-1]["answer"])[:5]
    assert words and all(w in page for w in words)  # the answer itself is on the page

"""A short, bounded load on `kit serve`'s app with the real model: customers through the API and the UI queue.

The full run with figures is bench/load.py; this one proves the behaviour: every customer gets answers,
no request fails other than a clear "busy, retry" (503 with Retry-After) that the customer follows, and
a saturated server refuses at once instead of piling requests up into timeouts.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from runtime_fixtures import serve

from kit.server.app import build_server
from kit.server.settings import Limits

pytestmark = pytest.mark.reliability
QUESTIONS = ["How long do I have to return an item?", "What does the folding lantern cost?", "I want a real person"]


@pytest.fixture(scope="module")
def small_server(example_service: Any) -> Any:
    """The real server over the example domain, with room for two API answers and a UI queue of two."""
    limits = Limits(max_busy=2, queue_size=2, rate_per_minute=0)
    yield from serve(build_server(example_service, limits=limits))


def ask(url: str, question: str) -> tuple[int, str]:
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": question}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as resp:
        text = "".join(resp.iter_text())
        return resp.status_code, resp.headers.get("retry-after", "") if resp.status_code != 200 else text


def test_customers_through_the_api_all_get_answers_following_retry_after(small_server: str) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def customer(n: int) -> int:
        answered = 0
        for i in range(2):
            for _ in range(30):  # a customer retries when told to, as long as it takes
                status, payload = ask(small_server, QUESTIONS[(n + i) % len(QUESTIONS)])
                with lock:
                    statuses.append(status)
                if status == 200:
                    assert payload.endswith("data: [DONE]\n\n")
                    answered += 1
                    break
                assert status == 503 and payload.isdigit(), (status, payload)
                time.sleep(int(payload) / 4)  # sooner than told: more 503s, still no failures
        return answered

    with ThreadPoolExecutor(max_workers=6) as pool:
        answered = list(pool.map(customer, range(6)))
    assert answered == [2] * 6
    assert set(statuses) <= {200, 503} and 503 in statuses  # saturated at times, and said so


def test_a_saturated_api_refuses_at_once_with_retry_after(small_server: str) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda q: ask(small_server, q), [QUESTIONS[0]] * 8))
    refused = [r for r in results if r[0] == 503]
    assert refused and all(r[1].isdigit() and int(r[1]) >= 1 for r in refused)
    assert all(status in (200, 503) for status, _ in results)


def test_a_full_ui_queue_says_so_and_the_ui_keeps_answering(small_server: str) -> None:
    from gradio_client import Client

    def ui(question: str) -> str:
        try:
            job = Client(small_server, verbose=False).submit(question, api_name="/chat")
            job.result()
            return "ok"
        except Exception as exc:
            return "full" if "queue" in str(exc).lower() else f"error: {exc}"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(ui, [QUESTIONS[0]] * 10))
    assert "ok" in outcomes and set(outcomes) <= {"ok", "full"}, outcomes
    assert ui(QUESTIONS[1]) == "ok"  # and it recovers

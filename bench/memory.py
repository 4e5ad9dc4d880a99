"""Where `kit serve`'s memory goes: the chat service alone, API answers, and UI sessions.

    .venv/bin/python bench/memory.py                    # example domain, both parts
    .venv/bin/python bench/memory.py --part sessions --rounds 3 --per-round 300

`service`: in this process, the real chat service answers questions and retrieves; RSS after the first
answer, after each round of retrievals and after each round of answers. `sessions`: `kit serve` as its
own process; RSS after each round of API calls (the baseline: no server-side session) and after each
round of new UI sessions (each a fresh `gradio_client.Client`), all asking a hand-off question, which the
guardrails answer without the model. Prints MB per round and per UI session against the API baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
from load import QUESTIONS, free_port, prepare, rss_mb

ROOT = Path(__file__).resolve().parent.parent
HANDOFF = "I want a real person"


def service_part(domain: Path, rounds: int) -> dict[str, object]:
    from kit.domain import load_domain
    from kit.services.assistant.chat import ChatService

    service = ChatService.open(load_domain(domain))
    questions = [*QUESTIONS[:6], *(f"Do you have item number {i} in blue?" for i in range(50))]
    service.ask(questions[0]).finish()
    figures: dict[str, object] = {"rss_mb_after_first_answer": round(rss_mb(os.getpid()))}
    retrieved, answered = [], []
    for _ in range(rounds):
        for i in range(500):
            service.retriever.retrieve(f"{questions[i % len(questions)]} {i}")
        gc.collect()
        retrieved.append(round(rss_mb(os.getpid())))
    for _ in range(rounds):
        for i in range(60):
            service.ask(f"{questions[i % len(questions)]} {i}").finish()
        gc.collect()
        answered.append(round(rss_mb(os.getpid())))
    return {**figures, "rss_mb_after_each_500_retrievals": retrieved, "rss_mb_after_each_60_answers": answered}


def sessions_part(domain: Path, rounds: int, per_round: int) -> dict[str, object]:
    from gradio_client import Client

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "KIT_RATE_PER_MINUTE": "0", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "kit", "serve", str(domain), "--port", str(port)], env=env)
    body = {"model": "x", "messages": [{"role": "user", "content": HANDOFF}]}

    def api() -> None:
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60).status_code == 200

    def ui() -> None:
        Client(url, verbose=False).predict(HANDOFF, api_name="/chat")

    try:
        wait_listening(url)
        for call in (api, ui):  # warm both paths before measuring
            for _ in range(20):
                call()
        start = rss_mb(server.pid)
        growth: dict[str, list[float]] = {"api": [], "ui": []}
        for _ in range(rounds):
            for kind, call in (("api", api), ("ui", ui)):
                before = rss_mb(server.pid)
                for _ in range(per_round):
                    call()
                growth[kind].append(round(rss_mb(server.pid) - before, 1))
    finally:
        server.terminate()
        server.wait(timeout=30)
    api_mb, ui_mb = sum(growth["api"]) / rounds, sum(growth["ui"]) / rounds
    return {
        "rss_mb_at_start": round(start), "per_round": per_round,
        "api_growth_mb_each_round": growth["api"], "ui_growth_mb_each_round": growth["ui"],
        "kb_per_ui_session_beyond_api": round((ui_mb - api_mb) * 1024 / per_round, 1),
    }  # fmt: skip


def wait_listening(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("kit serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", type=Path, default=ROOT / "data_templates" / "example")
    parser.add_argument("--part", choices=["service", "sessions", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=300, help="API calls and UI sessions per round")
    args = parser.parse_args()
    domain = prepare(args.domain, max_tokens=32)
    figures: dict[str, object] = {}
    try:
        if args.part in ("sessions", "both"):
            figures["sessions"] = sessions_part(domain, args.rounds, args.per_round)
        if args.part in ("service", "both"):
            figures["service"] = service_part(domain, args.rounds)
    finally:
        shutil.rmtree(domain.parent, ignore_errors=True)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

"""Load on `kit serve` over loopback: simulated customers through the API and the Gradio queue.

    .venv/bin/python bench/load.py                      # 20 customers, 2 minutes, example domain
    .venv/bin/python bench/load.py --customers 50 --minutes 5

Starts `kit serve` as its own process on 127.0.0.1 (rate limit off: every customer shares one address),
measures one customer alone first (the baseline), then N customers at once, each asking, reading the
answer and thinking a moment, 30% of them through the UI's queue. Prints throughput, time to first
token (p50/p95, and as a ratio of the baseline), errors, "busy, retry" answers, the server's memory
over time (per tenth of the run, and its growth rate over the second half); then saturates the API
(3 x KIT_MAX_BUSY requests at once) to show what a full server says.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How long do I have to return an item?",
    "What does the folding lantern cost?",
    "Is the enamel camp mug in stock?",
    "Do you ship abroad?",
    "How much does the mug weigh?",
    "I want a real person",
    "What is the capital of France?",
]


def prepare(domain: Path, max_tokens: int) -> Path:
    from kit.domain import load_domain
    from kit.services.retrieval.ingest import index_domain

    dest = Path(tempfile.mkdtemp(prefix="kit-load-")) / domain.name
    shutil.copytree(domain, dest, ignore=shutil.ignore_patterns("build"))
    spec = yaml.safe_load((dest / "domain.yaml").read_text())
    spec.setdefault("model", {}).setdefault("sampling", {}).update(max_tokens=max_tokens, temperature=0.0)
    (dest / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    index_domain(load_domain(dest), progress=False)
    return dest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ask_api(url: str, question: str) -> tuple[int, float | None, str]:
    """(status, seconds to the first content, retry-after) for one streamed completion."""
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": question}]}
    started = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp.status_code, None, resp.headers.get("retry-after", "")
        first = None
        for line in resp.iter_lines():
            if first is None and line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                first = time.perf_counter() - started
        return 200, first, ""


def ask_ui(url: str, question: str) -> tuple[int, float | None, str]:
    from gradio_client import Client

    started = time.perf_counter()
    try:
        job = Client(url, verbose=False).submit(question, api_name="/chat")
        first = None
        for _ in job:
            first = first or time.perf_counter() - started
        job.result()
        return 200, first, ""
    except Exception as exc:  # gradio_client raises on a full queue
        return (503 if "queue" in str(exc).lower() else 500), None, str(exc)[:80]


def memory_trend(memory: list[tuple[float, float]]) -> dict[str, object]:
    """RSS per tenth of the run, and the growth rate over its second half (least squares, MB per hour)."""
    if len(memory) < 10:
        return {}
    size = len(memory) // 10
    tenths = [round(statistics.mean(m for _, m in memory[i * size : (i + 1) * size]), 1) for i in range(10)]
    half = memory[len(memory) // 2 :]
    slope = statistics.linear_regression([t for t, _ in half], [m for _, m in half]).slope
    return {"rss_mb_by_tenth": tenths, "rss_growth_mb_per_hour_second_half": round(slope * 3600, 1)}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else (values[0] if values else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", type=Path, default=ROOT / "data_templates" / "example")
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-busy", type=int, default=8)
    parser.add_argument("--ui-share", type=float, default=0.3)
    args = parser.parse_args()

    domain = prepare(args.domain, args.max_tokens)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "KIT_RATE_PER_MINUTE": "0", "KIT_MAX_BUSY": str(args.max_busy),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    server = subprocess.Popen([sys.executable, "-m", "kit", "serve", str(domain), "--port", str(port)], env=env)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        alone = [ask_api(url, QUESTIONS[i % 5])[1] or 0.0 for i in range(5)]
        baseline = statistics.median(alone)
        memory: list[tuple[float, float]] = []
        results: list[tuple[str, int, float | None]] = []
        busy = 0
        lock = threading.Lock()
        start = time.monotonic()
        deadline = start + args.minutes * 60

        def customer(n: int) -> None:
            nonlocal busy
            rng = random.Random(n)
            via = "ui" if rng.random() < args.ui_share else "api"
            while time.monotonic() < deadline:
                status, first, retry = (ask_ui if via == "ui" else ask_api)(url, rng.choice(QUESTIONS))
                with lock:
                    results.append((via, status, first))
                if status in (429, 503):
                    with lock:
                        busy += 1
                    time.sleep(float(retry) if retry.isdigit() else 2.0)
                else:
                    time.sleep(rng.uniform(1, 4))  # reading the answer

        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(2.0):
                memory.append((time.monotonic() - start, rss_mb(server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(max_workers=args.customers) as pool:
            list(pool.map(customer, range(args.customers)))
        elapsed = time.monotonic() - start
        stop.set()

        # Saturation: everyone at once, no retries: a full server answers 503 at once, not after a timeout.
        burst = 3 * args.max_busy
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=burst) as pool:
            timed = list(pool.map(lambda q: (ask_api(url, q), time.perf_counter() - t0), QUESTIONS[:1] * burst))
        refused = [t for (status, _, _), t in timed if status == 503]
        served = [t for (status, _, _), t in timed if status == 200]

        ok = [r for r in results if r[1] == 200]
        firsts = [f for _, _, f in ok if f is not None]
        errors = [r for r in results if r[1] not in (200, 429, 503)]
        third = max(1, len(memory) // 3)
        early, late = memory[:third], memory[-third:]
        figures = {
            "customers": args.customers, "seconds": round(elapsed, 1), "answers": len(ok),
            "answers_per_min": round(len(ok) / elapsed * 60, 1),
            "api_answers": sum(1 for r in ok if r[0] == "api"), "ui_answers": sum(1 for r in ok if r[0] == "ui"),
            "ttft_alone_s": round(baseline, 3), "ttft_p50_s": round(pct(firsts, 50), 3),
            "ttft_p95_s": round(pct(firsts, 95), 3),
            "ttft_p50_vs_alone": round(pct(firsts, 50) / baseline, 1) if baseline else None,
            "busy_retry": busy, "errors": len(errors), "error_samples": errors[:3],
            "rss_mb_first_third": round(statistics.mean(m for _, m in early), 1) if early else None,
            "rss_mb_last_third": round(statistics.mean(m for _, m in late), 1) if late else None,
            "rss_mb_max": round(max((m for _, m in memory), default=0.0), 1),
            **memory_trend(memory),
            "burst": burst, "burst_served": len(served), "burst_503": len(refused),
            "burst_503_slowest_s": round(max(refused), 3) if refused else None,
            "burst_served_slowest_s": round(max(served), 3) if served else None,
        }  # fmt: skip
        print(json.dumps(figures, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(domain.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

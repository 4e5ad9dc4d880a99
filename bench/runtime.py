"""Runtime speed, as ratios measured in one run.

    .venv/bin/python bench/runtime.py [domain_dir] [--rounds 3]

Prints:
- time to first token of a follow-up turn (KV cache of the unchanged prefix reused) vs the same
  prompt cold (cache cleared) — goal <= 0.5x;
- generation tok/s through kit's chat service vs bare ``llama_cpp.Llama`` on the same prompt and
  model — goal >= 0.95x;
- cold start of `kit serve` to its first answer over HTTP — goal <= 10 s;
- the serving process's RSS.
The domain is copied to a temp folder and indexed there (default: data_templates/example).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.components.llm import LlamaEngine  # noqa: E402
from kit.domain import load_domain  # noqa: E402
from kit.services.chat import ChatService  # noqa: E402
from kit.services.ingest import index_domain  # noqa: E402

FIRST = "How long do I have to return an item?"
FOLLOW = "And how long does standard delivery take?"


def ttft(pieces) -> tuple[float, int, float]:
    """(seconds to the first piece, pieces, seconds from first to last piece) of a stream."""
    start = time.perf_counter()
    first, n = None, 0
    for _ in pieces:
        first = first or time.perf_counter()
        n += 1
    end = time.perf_counter()
    return (first or end) - start, n, end - (first or end)


def kv_reuse(service: ChatService, rounds: int) -> None:
    engine = service.engine
    assert isinstance(engine, LlamaEngine)
    warm, cold, evaluated = [], [], []
    for _ in range(rounds):
        engine.llm.reset()
        first = service.ask(FIRST)
        first.finish()
        follow = service.ask(FOLLOW, first.history())
        evaluated.append(_new_tokens(engine))
        warm.append(ttft(follow)[0])
        engine.llm.reset()  # same follow-up prompt, nothing cached
        cold.append(ttft(service.ask(FOLLOW, first.history()))[0])
    w, c = statistics.median(warm), statistics.median(cold)
    print(f"ttft follow-up: reused prefix {w:.3f} s, cold {c:.3f} s, ratio {w / c:.2f}x (goal <= 0.5x)")
    new, total = evaluated[-1]
    print(f"  prompt tokens evaluated on the follow-up: {new} of {total} ({new / total:.2f}x)")


def _new_tokens(engine: LlamaEngine) -> tuple[int, int]:
    """(tokens llama.cpp must evaluate, prompt tokens) for the prompt of the last ask, given the cache."""
    cached, prompt = list(engine.llm._input_ids), engine.tokens(engine.last_prompt)
    shared = 0
    while shared < min(len(cached), len(prompt)) and cached[shared] == prompt[shared]:
        shared += 1
    return len(prompt) - shared, len(prompt)


def generation_speed(service: ChatService, rounds: int) -> None:
    engine = service.engine
    assert isinstance(engine, LlamaEngine)
    reply = service.ask(FIRST)
    prompt = engine.template.render([{"role": "system", "content": service.system}, reply.sent])
    max_tokens = 64
    kit_rates, bare_rates = [], []
    for _ in range(rounds):
        engine.llm.reset()
        _, n, gen = ttft(engine.stream_prompt(prompt, max_tokens))
        kit_rates.append((n - 1) / gen)
        engine.llm.reset()
        s = service.domain.spec.model.sampling
        bare = engine.llm.create_completion(
            prompt, max_tokens=max_tokens, stream=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
            repeat_penalty=s.repeat_penalty, stop=list(engine.template.stop),
        )  # fmt: skip
        _, n, gen = ttft(bare)
        bare_rates.append((n - 1) / gen)
    k, b = statistics.median(kit_rates), statistics.median(bare_rates)
    print(f"generation: kit {k:.1f} tok/s, bare llama_cpp {b:.1f} tok/s, ratio {k / b:.2f}x (goal >= 0.95x)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_cold_start(domain_dir: Path) -> None:
    port = free_port()
    kit = str(Path(sys.executable).parent / "kit")
    start = time.perf_counter()
    proc = subprocess.Popen([kit, "serve", str(domain_dir), "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        body = {"model": "x", "messages": [{"role": "user", "content": FIRST}]}
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.perf_counter() - start > 180:
                    raise SystemExit("kit serve did not come up") from None
                time.sleep(0.2)
        took = time.perf_counter() - start
        rss = _rss_mb(proc.pid)
        print(f"kit serve cold start to first answer: {took:.1f} s (goal <= 10 s), status {r.status_code}; "
              f"RSS {rss:.0f} MB")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", nargs="?", default=str(ROOT / "data_templates" / "example"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; domain: {args.domain}")
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / "domain"
        shutil.copytree(args.domain, dest, ignore=shutil.ignore_patterns("build"))
        index_domain(load_domain(dest), progress=False)
        service = ChatService.open(load_domain(dest))
        kv_reuse(service, args.rounds)
        generation_speed(service, args.rounds)
        del service
        serve_cold_start(dest)


if __name__ == "__main__":
    main()

"""Runtime speed, as ratios measured in one run.

    .venv/bin/python bench/runtime.py [domain_dir] [--rounds 3]

Prints:
- time to first token of a follow-up turn (KV cache of the unchanged prefix reused) vs the same
  prompt cold (cache cleared) — goal <= 0.5x;
- generation tok/s through kit's chat service vs bare ``llama_cpp.Llama`` on the same prompt and
  model — goal >= 0.95x;
- generation tok/s with the fact lock vs without it (``model.fact_lock``), same engine and prompt — goal >= 0.95x;
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
from kit.services.assistant.chat import ChatService  # noqa: E402
from kit.services.retrieval.ingest import index_domain  # noqa: E402

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
    s = service.domain.spec.model.sampling
    rates: dict[str, list[float]] = {"kit": [], "bare": []}
    for i in range(2 * rounds):
        which = ("kit", "bare")[i % 2] if i // 2 % 2 == 0 else ("bare", "kit")[i % 2]  # alternate who goes first
        engine.llm.reset()
        if which == "kit":
            pieces = engine.stream_prompt(prompt, max_tokens)
        else:
            pieces = engine.llm.create_completion(
                prompt, max_tokens=max_tokens, stream=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                repeat_penalty=s.repeat_penalty, stop=list(engine.template.stop),
            )  # fmt: skip
        _, n, gen = ttft(pieces)
        rates[which].append((n - 1) / gen)
    kit_rates, bare_rates = rates["kit"], rates["bare"]
    k, b = statistics.median(kit_rates), statistics.median(bare_rates)
    print(f"generation: kit {k:.1f} tok/s, bare llama_cpp {b:.1f} tok/s, ratio {k / b:.2f}x (goal >= 0.95x)")


def fact_lock_cost(service: ChatService, rounds: int) -> None:
    engine = service.engine
    assert isinstance(engine, LlamaEngine) and engine.figure_tokens is not None, "the fact lock is off"
    reply = service.ask("What does the folding lantern cost, and how many lumens is it?")
    prompt = engine.template.render([{"role": "system", "content": service.system}, reply.sent])
    figures, rates = engine.figure_tokens, {"locked": [], "free": []}
    for i in range(2 * rounds):
        which = ("locked", "free")[i % 2] if i // 2 % 2 == 0 else ("free", "locked")[i % 2]
        engine.figure_tokens = figures if which == "locked" else None
        engine.llm.reset()
        _, n, gen = ttft(engine.stream_prompt(prompt, 64))
        rates[which].append((n - 1) / gen)
    engine.figure_tokens = figures
    locked, free = statistics.median(rates["locked"]), statistics.median(rates["free"])
    print(f"fact lock: {locked:.1f} tok/s locked, {free:.1f} tok/s without, ratio {locked / free:.2f}x (goal >= 0.95x)")


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
        up = _wait_up(f"http://127.0.0.1:{port}/v1/models", proc, start)
        first, done = _stream_first_answer(f"http://127.0.0.1:{port}/v1/chat/completions")
        print(f"kit serve cold start: listening {up - start:.1f} s, first token {first - start:.1f} s "
              f"(goal <= 10 s), whole first answer {done - start:.1f} s; RSS {_rss_mb(proc.pid):.0f} MB")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_up(url: str, proc: subprocess.Popen, start: float) -> float:
    while True:
        try:
            httpx.get(url, timeout=5)
            return time.perf_counter()
        except httpx.TransportError:
            if proc.poll() is not None or time.perf_counter() - start > 180:
                raise SystemExit("kit serve did not come up") from None
            time.sleep(0.1)


def _stream_first_answer(url: str) -> tuple[float, float]:
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": FIRST}]}
    first = None
    with httpx.stream("POST", url, json=body, timeout=300) as resp:
        for line in resp.iter_lines():
            if first is None and '"content": "' in line and '"content": ""' not in line:
                first = time.perf_counter()
    done = time.perf_counter()
    return first or done, done


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
        fact_lock_cost(service, args.rounds)
        del service
        serve_cold_start(dest)


if __name__ == "__main__":
    main()

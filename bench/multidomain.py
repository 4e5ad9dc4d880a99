"""Several domains in one `kit serve`: memory against one domain, and what switching adapters costs when customers of
different domains interleave.

    .venv/bin/python bench/multidomain.py                     # retail, clinic and travel, 2 questions each
    .venv/bin/python bench/multidomain.py --questions 5 --part switching

The three templates are copied, switched to embedded:gemma-3-270m with their shipped LoRA adapters (as each
domain.yaml's model comment says) and indexed. Every figure is a ratio against one domain measured in the same run.

`memory`: `kit serve` as its own process, with retail alone and then with the three; RSS once every domain answered a
question through the API (each UI and model buffer then exists). Three one-domain processes would take 3.0x.
`switching`: in this process, the three domains' chat services on one shared model (kit/components/model_pool.py),
answering the same turns grouped by domain (no switch but at a domain's first turn) and interleaved (a switch at every
turn, which drops the KV cache: the whole prompt is evaluated again); the baseline is the same turns with each domain
alone on a model load of its own, as three processes would answer them (no switch, each KV cache kept). Also: one
adapter switch itself, and the memory a llama.cpp context per domain would add (the alternative that keeps a KV cache
per domain within one load). The three orders take turns for ``--rounds`` rounds and each keeps its best: on a shared
box, other work only ever slows a round down.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from load import free_port, rss_mb

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = ("retail", "clinic", "travel")
MODEL = "embedded:gemma-3-270m"


def prepare(names: Sequence[str], max_tokens: int) -> list[Path]:
    """Indexed copies of the templates on Gemma 3 270M with their adapters, answers of ``max_tokens``."""
    from kit.domain import load_domain
    from kit.services.retrieval.ingest import index_domain

    base = Path(tempfile.mkdtemp(prefix="kit-multi-"))
    dirs = []
    for name in names:
        dest = base / name
        shutil.copytree(ROOT / "domains" / name, dest, ignore=shutil.ignore_patterns("build"))
        spec = yaml.safe_load((dest / "domain.yaml").read_text(encoding="utf-8"))
        sampling = {**spec["model"].get("sampling", {}), "max_tokens": max_tokens, "temperature": 0.0}
        adapters = [{"path": "adapters/cpu-270m.gguf"}]
        spec["model"] = {**spec["model"], "gguf": MODEL, "chat_template": "gemma", "adapters": adapters,
                         "sampling": sampling}  # fmt: skip
        (dest / "domain.yaml").write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        index_domain(load_domain(dest), progress=False)
        dirs.append(dest)
    return dirs


def questions(domain: Path, n: int) -> list[str]:
    spec = yaml.safe_load((domain / "domain.yaml").read_text(encoding="utf-8"))
    return list(spec["ui"]["example_questions"][:n])


def served_rss(dirs: Sequence[Path]) -> float:
    """MB of RSS of `kit serve DIRS...` once each domain answered one API question."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "KIT_RATE_PER_MINUTE": "0", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "-m", "kit", "serve", *map(str, dirs), "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        for domain in dirs:
            body = {"model": domain.name, "messages": [{"role": "user", "content": questions(domain, 1)[0]}]}
            resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
            assert resp.status_code == 200, resp.text
        time.sleep(1)
        return rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)


def memory_part(dirs: Sequence[Path]) -> None:
    one = served_rss(dirs[:1])
    three = served_rss(dirs)
    print(f"memory: kit serve {dirs[0].name}: {one:.0f} MB RSS; kit serve {' '.join(d.name for d in dirs)}: "
          f"{three:.0f} MB = {three / one:.2f}x one domain (three processes: 3.00x)")  # fmt: skip


@dataclass
class Run:
    """Turns answered in one order: wall seconds, and the model's first token of each (its prompt evaluated)."""

    seconds: float
    first_token: list[float]
    turns: int

    def per_turn(self) -> float:
        return self.seconds / self.turns

    def first(self) -> float:
        return statistics.mean(self.first_token)


def timed_turns(services: dict[str, Any], order: Sequence[tuple[str, str]]) -> Run:
    first: list[float] = []
    started = time.perf_counter()
    for name, question in order:
        reply = services[name].ask(question)
        reply.finish()
        if reply.first_token_s is not None:
            first.append(reply.first_token_s)
    return Run(time.perf_counter() - started, first, len(order))


def warm(engine: Any) -> None:
    """A one-token answer: the engine's first-call costs out of the figures."""
    "".join(engine.stream_prompt("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", max_tokens=1))


def switching_part(dirs: Sequence[Path], n: int, rounds: int) -> None:
    from kit.components.llm import LlamaEngine
    from kit.server.multi import open_domains
    from kit.services.assistant.chat import ChatService

    chats, pool = open_domains(dirs)
    pooled = {c.domain.name: c for c in chats}
    (shared,) = pool.models.values()
    # The baseline: each domain alone on a load of its own (as in a process of its own): no switch, its KV cache kept.
    alone = {c.domain.name: ChatService.open(c.domain, engine=LlamaEngine(c.domain.spec.model, c.domain.root))
             for c in chats}  # fmt: skip
    for service in (*pooled.values(), *alone.values()):
        warm(service.engine)
    asked = {name: questions(service.domain.root, n) for name, service in pooled.items()}
    grouped = [(name, q) for name, qs in asked.items() for q in qs]
    interleaved = [(name, asked[name][i]) for i in range(n) for name in asked]
    orders = {"alone": (alone, grouped), "grouped by domain": (pooled, grouped), "interleaved": (pooled, interleaved)}
    best: dict[str, Run] = {}
    switches: dict[str, int] = {}
    for _ in range(rounds):  # the orders take turns, and each keeps its best round: other work on the box is noise
        for label, (services, order) in orders.items():
            before = shared.switches
            run = timed_turns(services, order)
            switches[label] = shared.switches - before
            if label not in best or run.seconds < best[label].seconds:
                best[label] = run
    base = best.pop("alone")
    longest = chats[0].domain.spec.model.sampling.max_tokens
    print(
        f"switching, {len(grouped)} turns ({n} a domain, answers of {longest} tokens at most), best of {rounds} rounds;"
        f" baseline, each domain alone on a model load of its own: {base.per_turn():.2f} s a turn, first token "
        f"{base.first():.2f} s"
    )
    for label, run in best.items():
        print(f"  one shared load, {label}: {run.per_turn() / base.per_turn():.2f}x the time a turn (throughput "
              f"{base.per_turn() / run.per_turn():.2f}x), first token {run.first() / base.first():.2f}x, "
              f"{switches[label]} adapter switches")  # fmt: skip
    print(f"  one adapter switch (llama_set_adapters_lora, the KV cache dropped): {adapter_switch_us(shared):.0f} us")
    context_part(shared)


def adapter_switch_us(shared: Any) -> float:
    """Microseconds one switch between two domains' adapters takes, on its own."""
    paths = list(shared.handles)
    rounds = 200
    started = time.perf_counter()
    with shared.lock:
        for i in range(rounds):
            shared.use(((paths[i % len(paths)], 1.0),))
    return (time.perf_counter() - started) / rounds * 1e6


def context_part(shared: Any) -> None:
    """What a llama.cpp context per domain (each keeping its KV cache) would add to memory."""
    from llama_cpp import _internals

    gc.collect()
    before = rss_mb(os.getpid())
    llm = shared.llm
    extra = _internals.LlamaContext(model=llm._model, params=llm.context_params, verbose=False)
    batch = _internals.LlamaBatch(n_tokens=llm.n_batch, embd=0, n_seq_max=1, verbose=False)
    tokens = llm.tokenize(b"A question to fill the context's buffers " * 8)
    batch.set_batch(batch=tokens, n_past=0, logits_all=False)
    extra.decode(batch)
    added = rss_mb(os.getpid()) - before
    print(
        f"  a llama.cpp context per domain instead (n_ctx {llm.n_ctx()}): +{added:.0f} MB for each domain after "
        "the first"
    )
    extra.close()
    batch.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=2, help="Questions per domain (from its example questions).")
    parser.add_argument("--max-tokens", type=int, default=16, help="Longest answer in tokens.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of each order; each order's best is kept.")
    parser.add_argument("--part", choices=["memory", "switching", "all"], default="all")
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    dirs = prepare(DOMAINS, args.max_tokens)
    print(f"multidomain: {', '.join(DOMAINS)} on {MODEL} with their adapters, {os.cpu_count()} CPUs")
    if args.part in ("memory", "all"):
        memory_part(dirs)
    if args.part in ("switching", "all"):
        switching_part(dirs, args.questions, args.rounds)


if __name__ == "__main__":
    main()

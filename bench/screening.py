"""What screening a message costs (rules and hand-off triggers, before retrieval), against embedding it once.

    .venv/bin/python bench/screening.py [clinic] [--messages 300]

Every chat message is screened before anything else: patterns (as written, folded, respelled; negations read),
then similarity of the message and its sentences to the rules' examples, or a learned check's classifier (which may
read another encoder's vectors of the same pieces: screening.encoder). The baseline, measured in the same run,
is one embedding of the message with the same model (what any similarity check costs at least); the figures are
per message, p50, and the ratios to that baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kit.components.embedding import Embedder  # noqa: E402
from kit.domain import load_domain  # noqa: E402
from kit.services.evaluation.safety import load_safety  # noqa: E402
from kit.services.safety.guardrails import Guardrails  # noqa: E402
from kit.services.safety.learned import encoder_name, screening  # noqa: E402


def p50_ms(step: Callable[[str], object], messages: list[str]) -> float:
    times = []
    for text in messages:
        started = time.perf_counter()
        step(text)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", nargs="?", default="clinic")
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    domain = load_domain(ROOT / "domains" / args.domain)
    embed = Embedder(domain.spec.retrieval.embedding_model).embed
    # ordinary messages (most of what a chat gets; an emergency's pattern spares the learned checks' encoder), from
    # the calibration split only
    items = [i for i in load_safety(domain) if i.split == "calibration" and i.expect == "none"]
    messages = [item.text for item in items][: args.messages]
    full, patterns_only = Guardrails(domain.spec, embed), Guardrails(domain.spec)
    full.warm()
    embed(messages[:8])  # the model loaded and warm before anything is timed
    baseline = p50_ms(lambda t: embed([t]), messages)
    screen = p50_ms(full.screen, messages)
    patterns = p50_ms(patterns_only.screen, messages)
    served = screening(domain, embed)  # what kit serve screens with: the learned checks too (trained if stale)
    served.warm()
    if served.learned_embed is not None:
        served.learned_embed(messages[:8])
    learned = p50_ms(served.screen, messages)
    checks = len(full.checks)
    print(f"{args.domain}: {len(messages)} ordinary messages, {checks} rules and triggers")
    print(f"  one embedding of the message (baseline): {baseline:.1f} ms")
    print(f"  screen (patterns + examples):            {screen:.1f} ms  ({screen / baseline:.2f}x baseline)")
    if domain.spec.screening.learned:
        name = f"learned checks ({encoder_name(domain)})"
        print(f"  screen with the {name}: {learned:.1f} ms  ({learned / baseline:.2f}x baseline)")
    print(f"  patterns alone:                          {patterns:.1f} ms  ({patterns / baseline:.2f}x baseline)")


if __name__ == "__main__":
    main()

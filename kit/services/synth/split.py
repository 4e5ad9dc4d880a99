"""Train/validation split by paraphrase group: all examples of one group land on the same side."""

from __future__ import annotations

import random

from kit.services.synth.examples import Example


def split(examples: list[Example], fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """(train, validation): whole groups, drawn in a seeded order, go to validation until it holds ``fraction``."""
    if fraction <= 0 or not examples:
        return list(examples), []
    groups = sorted({ex.group for ex in examples})
    random.Random(f"{seed}:split").shuffle(groups)
    sizes = {g: 0 for g in groups}
    for ex in examples:
        sizes[ex.group] += 1
    target = fraction * len(examples)
    held: set[str] = set()
    count = 0
    for g in groups:
        if count >= target:
            break
        if count + sizes[g] <= target * 1.5 or count == 0:
            held.add(g)
            count += sizes[g]
    if len(held) == len(groups):  # never hold out everything
        held.discard(groups[-1])
    return [ex for ex in examples if ex.group not in held], [ex for ex in examples if ex.group in held]

"""The pieces of the training loop: which examples a step takes, one optimizer step, the validation loss.

The loss is the mean over every assistant token of a step (``kit.components.trainer.assistant_loss``), whatever
the micro-batches' lengths. A step's batches are a pure function of the step number, so a resumed run takes
exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kit.services.training.data import Example
from kit.services.training.preset import Preset


def step_batches(lengths: list[int], p: Preset, step: int, n_proc: int, rank: int) -> list[list[int]]:
    """This process's micro-batches for optimizer step ``step``: a pure function of the step, so resume is exact."""
    from kit.components.trainer import length_grouped_batches

    per_epoch: dict[int, list[list[int]]] = {}
    picked = []
    for j in range(p.grad_accum):
        g = (step * p.grad_accum + j) * n_proc + rank
        n = -(-len(lengths) // p.batch_size)
        epoch, idx = divmod(g, n)
        if epoch not in per_epoch:
            per_epoch[epoch] = length_grouped_batches(lengths, p.batch_size, p.seed + epoch)
        picked.append(per_epoch[epoch][idx])
    return picked


def train_step(
    model: Any, optimizer: Any, scheduler: Any, acc: Any, micro: list[list[Example]], pad_id: int
) -> tuple[float, int]:
    """One optimizer step over ``micro`` batches; the loss is the mean over every assistant token in them."""
    from kit.components.trainer import IGNORE, assistant_loss, collate

    model.train()
    n_total = sum(sum(1 for x in e.labels[1:] if x != IGNORE) for b in micro for e in b) or 1
    loss_sum, real = 0.0, 0
    for examples in micro:
        batch = {k: v.to(acc.device) for k, v in collate([e.__dict__ for e in examples], pad_id).items()}
        loss, _ = assistant_loss(model, batch)
        acc.backward(loss / n_total)
        loss_sum += float(loss.detach())
        real += int(batch["attention_mask"].sum())
    acc.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / n_total, real


def val_loss(model: Any, acc: Any, val: list[Example], batch_size: int, pad_id: int) -> float:
    """Mean loss over every assistant token of the validation set."""
    import torch

    from kit.components.trainer import assistant_loss, collate

    model.eval()
    total, n = 0.0, 0
    order = sorted(range(len(val)), key=lambda i: len(val[i].input_ids))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = [val[i].__dict__ for i in order[start : start + batch_size]]
            batch = {k: v.to(acc.device) for k, v in collate(chunk, pad_id).items()}
            loss, count = assistant_loss(model, batch)
            total, n = total + float(loss), n + count
    return total / max(1, n)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a container stop, a job scheduler) ends training as Ctrl-C does: a checkpoint at the last
    finished step, then a message saying how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def peak_gpu_mb() -> int | None:
    """The most GPU memory torch held at once (what decides whether a run fits a card); None on the CPU."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_reserved() / 2**20)

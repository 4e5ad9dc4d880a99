"""Which process speaks and writes when ``accelerate launch`` (or torchrun) starts several to train one model.

The rule: only the main process (global rank 0) sets up the run (indexes the domain, grounds the examples),
writes the run folder, shows progress and logs; every other process waits for it, reads the examples it wrote,
trains its share of each step and logs errors only. A single process is the main one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from kit.errors import KitError

# What launchers set for the number of processes: torchrun and accelerate launch, then the MPI launchers.
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _alone() -> None:
    """The barrier of a single process: nobody to wait for."""


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes training one model."""

    rank: int = 0  # global rank: 0 is the main process
    count: int = 1
    wait: Callable[[], None] = _alone  # a barrier: returns once every process has called it

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched(env: Mapping[str, str]) -> int:
    """How many processes a launcher started (1 when none did)."""
    return max((int(env[v]) for v in WORLD_SIZE_VARS if env.get(v, "").isdigit()), default=1)


def current(env: Mapping[str, str] | None = None) -> Processes:
    """This process's place: accelerate's state when a launcher started several, else a single main process."""
    env = os.environ if env is None else env
    count = launched(env)
    if count <= 1:
        return Processes()
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # ACCELERATE_USE_CPU (accelerate launch --cpu) must reach the first state created, or gloo is never set up.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    if state.num_processes != count:
        raise KitError(
            f"{count} processes were launched but accelerate sees {state.num_processes}",
            "on GPUs use `accelerate launch --multi_gpu`; on CPUs set ACCELERATE_USE_CPU=1 "
            "(e.g. `ACCELERATE_USE_CPU=1 torchrun --nproc-per-node 2 -m kit finetune ...`)",
        )
    return Processes(state.process_index, state.num_processes, state.wait_for_everyone)


@contextmanager
def main_logs_only(procs: Processes, logger_name: str = "kit") -> Iterator[None]:
    """Within the block, kit's log speaks on the main process only (the others still log errors)."""
    log = logging.getLogger(logger_name)
    before = log.level
    if not procs.main:
        log.setLevel(max(before, logging.ERROR))
    try:
        yield
    finally:
        log.setLevel(before)

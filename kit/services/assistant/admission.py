"""The one admission queue in front of the model: the UI and the API take a place from the same count.

The model answers one turn at a time (the engine holds a lock), so turns running or waiting for it are counted;
beyond ``capacity`` a new turn is refused at once with how long to wait, instead of piling up into timeouts.
"""

from __future__ import annotations

import math
import threading

from kit.errors import KitError


class Busy(KitError):
    """Every place in the admission queue is taken; ``retry_after`` says when one is likely free."""

    def __init__(self, ahead: int, retry_after: int) -> None:
        super().__init__(f"busy: {ahead} answers ahead", f"retry in {retry_after} s")
        self.retry_after = retry_after


class Admission:
    """Counts turns running or waiting for the model; refuses more than ``capacity`` at once (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.busy = 0
        self.seconds = 1.0  # a moving average of how long one turn holds its place
        self.lock = threading.Lock()

    def enter(self) -> None:
        """Take a place, or raise Busy."""
        with self.lock:
            if self.busy < self.capacity:
                self.busy += 1
                return
        raise Busy(self.capacity, self.retry_after())

    def leave(self, seconds: float) -> None:
        """Give a place back after holding it ``seconds``."""
        with self.lock:
            self.busy -= 1
            self.seconds = 0.8 * self.seconds + 0.2 * seconds

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the turns ahead, one at a time."""
        with self.lock:
            return max(1, math.ceil(self.seconds * max(1, self.busy) / 2))

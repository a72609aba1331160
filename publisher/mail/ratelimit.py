"""How many messages a backend may hand over per second: the interface and an in-process limiter.

A provider's API takes messages in batches, and its account allows so many
messages per second whatever the batch size. A backend asks its limiter for
``n`` sends before each request, and the limiter blocks until they are allowed.

:class:`LocalRateLimiter` keeps its schedule in memory, shared by the threads
of one process. Several processes sending for one account need a limiter that
keeps the schedule where they all see it (a database row); it implements the
same :class:`RateLimiter` protocol.

The clock and the sleep are injected, so tests drive the schedule without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["LocalRateLimiter", "RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """Spaces sends out to a rate; shared by everything that sends for one account."""

    def acquire(self, n: int = 1) -> None:
        """Block until ``n`` more messages may be sent, and count them as sent."""
        ...


class LocalRateLimiter:
    """At most ``rate`` messages per second for this process; ``0`` or ``None``: no limit.

    Every message has a slot, ``1 / rate`` seconds after the one before; a batch
    of ``n`` goes when the last of its ``n`` slots is due. Time nobody used is
    not saved up: after a pause the next slot is now, so a burst after an idle
    minute still goes at the rate. Thread-safe: slots are handed out under a
    lock, and each caller sleeps outside it, until its own slot.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate < 0:
            raise ValueError(f"rate must be 0 (no limit) or more messages per second, got {rate}")
        self.rate = rate or 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: float | None = None  # when the next message may go

    def acquire(self, n: int = 1) -> None:
        """Block until ``n`` more messages may go at the rate (at once when unlimited)."""
        if self.rate <= 0 or n <= 0:
            return
        interval = 1.0 / self.rate
        with self._lock:
            now = self._clock()
            first = now if self._next_slot is None or self._next_slot < now else self._next_slot
            due = first + (n - 1) * interval
            self._next_slot = due + interval
        if due > now:
            self._sleep(due - now)

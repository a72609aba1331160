"""A token bucket per client address, in memory, for ``POST /subscribe``.

Each client address has a bucket of ``per_minute`` tokens that refills
continuously at ``per_minute`` a minute; a request takes one token or is told
how long to wait. IPv6 clients are counted per /64 network, since one
household or server usually holds a whole /64 and could otherwise walk
through its addresses. The number of buckets is capped; full buckets are the
first to go, as forgetting them changes nothing.

Not thread-safe by itself: the app calls it from its event loop only.

No I/O: the caller passes the time, and nothing is kept on disk or in the store.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict

__all__ = ["RateLimiter", "client_key"]

_MAX_BUCKETS = 10_000


def client_key(host: str) -> str:
    """The address a bucket is kept for: the host itself, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """``per_minute`` requests a minute per client, in bursts of up to ``per_minute``."""

    def __init__(self, per_minute: int, max_buckets: int = _MAX_BUCKETS) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0  # tokens per second
        self.max_buckets = max_buckets
        # key -> (tokens left, when they were counted, in seconds)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Take a token for ``key`` at ``now`` (seconds): 0 if allowed, else seconds to wait."""
        if self.capacity <= 0:
            return 0.0
        tokens, then = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - then) * self.refill)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._trim(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.refill

    @staticmethod
    def retry_after(wait: float) -> str:
        """The Retry-After header value for a wait in seconds: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))

    def _trim(self, now: float) -> None:
        if len(self._buckets) <= self.max_buckets:
            return
        # Buckets that have refilled are the same as no bucket at all.
        for key in [k for k, (t, then) in self._buckets.items() if self._full(t, then, now)]:
            del self._buckets[key]
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)  # the least recently seen client

    def _full(self, tokens: float, then: float, now: float) -> bool:
        return tokens + (now - then) * self.refill >= self.capacity

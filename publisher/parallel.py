"""Spreading a cold build's CPU work over the machine's cores.

Parsing ten thousand front matters and rendering a few hundred Markdown bodies
are pure CPU work in Python, so a cold build uses forked worker processes,
the calling process doing one share itself. Forking is only safe in a
process that runs no other threads, so the long-running scheduler (which
rebuilds warm, from its cache) always works in one process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["map_chunks", "worker_count"]

T = TypeVar("T")
R = TypeVar("R")

# Below this many items the cost of forking outweighs the gain.
MIN_ITEMS_PER_WORKER = 200


def worker_count(items: int) -> int:
    """How many processes are worth using for ``items`` pieces of work."""
    if threading.active_count() > 1 or not hasattr(os, "fork"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, items // MIN_ITEMS_PER_WORKER))


def map_chunks(func: Callable[[Sequence[T]], list[R]], items: Sequence[T], workers: int) -> list[R]:
    """``func`` over ``items`` in ``workers`` contiguous chunks; results keep the input order.

    ``func`` must be a module-level function: it is sent to the workers by name.
    """
    if workers <= 1 or len(items) < 2:
        return func(items)
    # Imported here: a warm build never forks, and these cost start-up time.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    size = -(-len(items) // workers)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=len(chunks) - 1, mp_context=context) as pool:
        futures = [pool.submit(func, chunk) for chunk in chunks[1:]]
        results = func(chunks[0])
        for future in futures:
            results.extend(future.result())
    return results

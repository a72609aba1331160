"""Spreading a build's CPU work over the machine's cores, and over waits on the disk.

Parsing ten thousand front matters and rendering a few hundred Markdown bodies
are pure CPU work in Python, so a cold build uses forked worker processes,
the calling process doing one share itself. Forking is only safe in a
process that runs no other threads, so the long-running scheduler (which
rebuilds warm, from its cache) always works in one process.

What it must never do: fork while another thread runs (:func:`worker_count` then says 1).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["Background", "map_chunks", "worker_count"]

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


# The job of the map_chunks call under way. Worker processes are forked after it
# is set, so they find the function and their chunk here: neither is pickled.
_job: tuple[Callable[[Sequence[Any]], Any], list[Sequence[Any]]] | None = None


def _run_chunk(index: int) -> Any:
    assert _job is not None, "map_chunks workers must be forked"
    func, chunks = _job
    return func(chunks[index])


def map_chunks(
    func: Callable[[Sequence[T]], list[R]],
    items: Sequence[T],
    workers: int,
    *,
    send: Callable[[list[R]], Any] | None = None,
    receive: Callable[[Any], list[R]] | None = None,
    weights: Sequence[int] | None = None,
    discard: Callable[[list[R]], None] | None = None,
) -> list[R]:
    """``func`` over ``items`` in ``workers`` contiguous chunks; results keep the input order.

    The chunks hold equal numbers of items, or items of equal total ``weights``
    (one per item: what each costs, roughly) when given.

    Workers are forked, so ``func`` may be any callable (a partial holding large
    objects costs nothing to hand over); only its results are pickled back, or
    first turned into something quicker to pickle by ``send`` in the worker and
    back by ``receive`` here. The caller's own chunk needs neither.

    When a chunk fails, ``discard`` is given the results of every chunk that
    did not (results that hold something to undo, such as temporary files)
    before the error is raised; ``func`` undoes its own failed chunk's work.
    """
    global _job
    if workers <= 1 or len(items) < 2:
        return func(items)
    # Imported here: a warm build never forks, and these cost start-up time.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    chunks = _split(items, workers, weights)
    context = multiprocessing.get_context("fork")
    work: Callable[[Sequence[T]], Any] = func if send is None else lambda c: send(func(c))
    _job = (work, chunks)
    done: list[list[R]] = []
    try:
        with ProcessPoolExecutor(max_workers=len(chunks) - 1, mp_context=context) as pool:
            futures = [pool.submit(_run_chunk, i) for i in range(1, len(chunks))]
            try:
                done.append(func(chunks[0]))
            finally:
                # Every worker's result is taken, even after a failure here, so
                # that discard sees everything the others made.
                error: BaseException | None = None
                for future in futures:
                    try:
                        sent = future.result()
                    except BaseException as exc:
                        error = error or exc
                        continue
                    done.append(sent if receive is None else receive(sent))
            if error is not None:
                raise error
    except BaseException:
        if discard is not None:
            for results in done:
                discard(results)
        raise
    finally:
        _job = None
    return [result for results in done for result in results]


def _split(items: Sequence[T], workers: int, weights: Sequence[int] | None) -> list[Sequence[T]]:
    if weights is None:
        size = -(-len(items) // workers)
        return [items[i : i + size] for i in range(0, len(items), size)]
    share = sum(weights) / workers
    chunks: list[Sequence[T]] = []
    start, total = 0, 0
    for index, weight in enumerate(weights):
        total += weight
        if total >= share * (len(chunks) + 1) and len(chunks) < workers - 1:
            chunks.append(items[start : index + 1])
            start = index + 1
    chunks.append(items[start:])
    return [chunk for chunk in chunks if chunk]


class Background(threading.Thread, Generic[R]):
    """Runs a function in a thread; :meth:`result` waits for its value (or its exception).

    For CPU work that can overlap with waiting on the disk. Start it only after
    the last fork: :func:`worker_count` forks no workers while it runs.
    """

    def __init__(self, func: Callable[[], R]) -> None:
        super().__init__(name="publisher-background", daemon=True)
        self._func = func
        self._value: R | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._func()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc

    def result(self) -> R | None:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value

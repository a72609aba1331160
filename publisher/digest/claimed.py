"""The rows one sender takes of a period, when several share it; and their shared send budget.

Every sender of a period (several processes, on one machine or many, on
PostgreSQL) runs the same loop: claim a batch of pending rows under a lease
(:meth:`~publisher.store.Store.claim_rows`), send them, claim the next. While
it works, a heartbeat renews the lease of the rows it holds and records how
far it got, so ``digest status`` can show each sender. When no row is free
but some are still held by another sender, it waits for their lease to end:
if that sender was killed, its rows are then free, and this one sends them.
It stops when no row of the period is pending.

A row that reached ``sending`` is never claimed again: whether it arrived is
for an operator to decide, as with a single sender.

:class:`SharedBudget` spaces every sender's messages on one schedule in the
database, so ``smtp.rate_limit`` is the period's limit, not each process's.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from publisher.digest.deliver import Item
from publisher.errors import StoreError
from publisher.store import LedgerRow, Store

__all__ = ["ClaimedWork", "SharedBudget", "sender_name", "wait_for_leases"]

#: Longest wait between two looks at a period whose rows other senders hold.
_POLL = 1.0


def sender_name() -> str:
    """A name for this sender process, unique across machines: host, pid, and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pause(until: datetime, now: datetime) -> float:
    """How long to wait for a lease that ends ``until``: not past it, nor past :data:`_POLL`."""
    return min(max((until - now).total_seconds(), 0.05), _POLL)


def wait_for_leases(store: Store, digest: str, *, clock: Callable[[], datetime]) -> None:
    """Return once no sender holds a row of ``digest`` (a killed one's lease has ended).

    For a sender with nothing to claim: the rows the others leave sending are
    only then uncertain rather than in flight.
    """
    while (end := store.next_lease_end(digest, now=clock())) is not None:
        time.sleep(_pause(end, clock()))


class ClaimedWork:
    """The items this sender sends, claimed from the ledger a batch at a time.

    ``make_items`` turns claimed rows into the messages to send (closing those
    that can no longer be sent); :meth:`take` is safe to call from every sender
    thread. Use as a context manager: entering registers the sender and starts
    the heartbeat; leaving stops it, gives back rows not yet started (a run
    that stopped early), and records the sender's totals.
    """

    def __init__(
        self,
        store: Store,
        digest: str,
        make_items: Callable[[list[LedgerRow]], list[Item]],
        *,
        batch: int,
        lease: timedelta,
        clock: Callable[[], datetime],
        stop: threading.Event,
    ) -> None:
        self.store = store
        self.digest = digest
        self.worker = sender_name()
        self._make_items = make_items
        self._batch = batch
        self._lease = lease
        self._clock = clock
        self._stop = stop
        self._queue: deque[Item] = deque()
        self._lock = threading.Lock()
        self.claimed: set[int] = set()  # the ids of every row this sender claimed
        self._counts = {"sent": 0, "failed": 0, "uncertain": 0}
        self._counts_lock = threading.Lock()
        self._beat_stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> ClaimedWork:
        host, pid = socket.gethostname(), os.getpid()
        self.store.register_sender(self.worker, self.digest, host=host, pid=pid, now=self._clock())
        self._beat = threading.Thread(target=self._heartbeat, name="digest-lease", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._beat_stop.set()
        if self._beat is not None:
            self._beat.join()
        # Rows claimed but not begun go back at once, not when the lease runs out.
        self.store.release_claims(self.digest, self.worker)
        self._flush()
        self.store.finish_sender(self.worker, now=self._clock())

    def take(self) -> Item | None:
        """The next message to send; None once the period has nothing pending, or on stop."""
        with self._lock:
            while not self._stop.is_set():
                if self._queue:
                    return self._queue.popleft()
                rows = self.store.claim_rows(
                    self.digest, self.worker, self._batch, now=self._clock(), lease=self._lease
                )
                if rows:
                    self.claimed.update(row.id for row in rows)
                    self._queue.extend(self._make_items(rows))
                    continue
                # Nothing free: done, unless other senders hold rows (if one was
                # killed, its rows come free when its lease ends).
                end = self.store.next_lease_end(
                    self.digest, now=self._clock(), other_than=self.worker
                )
                if end is None:
                    return None
                self._stop.wait(_pause(end, self._clock()))
            return None

    def take_batch(self, size: int) -> list[Item]:
        """Up to ``size`` messages to send together (a batch API's request).

        Waits as :meth:`take` does for the first only; the rest are what this
        sender holds or can claim at once. [] once the period has nothing pending.
        """
        first = self.take()
        if first is None:
            return []
        batch = [first]
        with self._lock:
            while len(batch) < size and not self._stop.is_set():
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                rows = self.store.claim_rows(
                    self.digest, self.worker, self._batch, now=self._clock(), lease=self._lease
                )
                if not rows:
                    break
                self.claimed.update(row.id for row in rows)
                self._queue.extend(self._make_items(rows))
        return batch

    def note(self, outcome: str) -> None:
        """Count one message's outcome for this sender's record ("sent", "failed", ...)."""
        if outcome in self._counts:
            with self._counts_lock:
                self._counts[outcome] += 1

    def _flush(self) -> None:
        with self._counts_lock:
            counts, self._counts = self._counts, {"sent": 0, "failed": 0, "uncertain": 0}
        if any(counts.values()):
            self.store.count_sender(self.worker, now=self._clock(), **counts)

    def _heartbeat(self) -> None:
        # A third of the lease: two beats may be missed before another sender may
        # take this one's rows.
        every = max(self._lease.total_seconds() / 3, 0.05)
        while not self._beat_stop.wait(every):
            try:
                self.store.renew_claims(
                    self.digest, self.worker, now=self._clock(), lease=self._lease
                )
                self._flush()
            except StoreError:
                continue  # a missed beat only brings the lease's end closer


class SharedBudget:
    """``smtp.rate_limit`` for every sender of a period together, from the store's schedule.

    Takes slots a few at a time (about half a second's worth), so that the
    store is asked once per few messages, not once per message.
    """

    def __init__(
        self,
        store: Store,
        digest: str,
        rate: float,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.digest = digest
        self._every = timedelta(seconds=1.0 / rate)
        self._chunk = max(1, int(rate / 2))
        self._clock = clock
        self._slots: deque[datetime] = deque()
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> None:
        """Return once ``n`` more messages may go, on the period's shared schedule."""
        for _ in range(n):
            with self._lock:
                if not self._slots:
                    start = self.store.take_send_slots(
                        self.digest, self._chunk, every=self._every, now=self._clock()
                    )
                    self._slots.extend(start + self._every * i for i in range(self._chunk))
                slot = self._slots.popleft()
            wait = (slot - self._clock()).total_seconds()
            if wait > 0:
                time.sleep(wait)

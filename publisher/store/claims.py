"""Several senders, one period: claims on ledger rows, the senders' records, the shared budget.

A period's pending rows are shared out in batches: a sender *claims* some
(``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two senders never
take the same rows, and neither waits for the other) under a *lease* that
names it and expires. It renews the lease while it works. A sender killed
with rows still pending leaves them to whoever claims after the lease ran out.

A claim only shares out work; it is not what stops a message going twice.
That is still ``mark_sending``'s conditional update (:mod:`.ledger`): a
sender whose lease ran out and whose rows another took can at most find its
``mark_sending`` refused, never hand over a message the other sends too.
A row already in ``sending`` when its sender died stays uncertain.

Also here: one row per sender process (what ``digest status`` shows of each),
the send slots of ``smtp.rate_limit`` taken from one schedule in the
database (the limit is the period's, however many senders share it), and the
lock that lets exactly one sender plan a period while the others wait.

:class:`ClaimOps` is that part of :class:`~publisher.store.Store`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from publisher.store.database import Conflict, Database
from publisher.store.schema import as_ledger_row, budget_table, ledger_table, workers_table
from publisher.store.values import LEDGER_STATUSES, LedgerRow

__all__ = ["ClaimOps", "SenderRecord"]

_PENDING = ledger_table.c.status == "pending"


@dataclass(frozen=True)
class SenderRecord:
    """One sender process of a period, as ``digest status`` shows it."""

    worker: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    finished_at: datetime | None
    claimed: int
    sent: int
    failed: int
    uncertain: int


def _planning_key(digest: str) -> int:
    # A stable 63-bit key per period for PostgreSQL's advisory locks.
    return 0x7075_0000_0000_0000 | zlib.crc32(f"plan {digest}".encode())


class ClaimOps(Database):
    """Claims, leases, sender records and the shared send budget of a period."""

    @property
    def shared_senders(self) -> bool:
        """Whether several processes may send one period at once (PostgreSQL, not SQLite)."""
        return self._engine.dialect.name == "postgresql"

    @contextmanager
    def planning_lock(self, digest: str) -> Iterator[None]:
        """Held while a sender plans ``digest``: the others wait here, then find it planned.

        PostgreSQL's session advisory lock on a connection of its own; on SQLite,
        where the state folder's file lock already admits one sender, nothing.
        """
        if not self.shared_senders:
            yield
            return
        key = _planning_key(digest)
        with self._engine.connect() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_lock(key)))
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                conn.commit()

    # --- claims -------------------------------------------------------------------------

    def claim_rows(
        self, digest: str, worker: str, limit: int, *, now: datetime, lease: timedelta
    ) -> list[LedgerRow]:
        """Take up to ``limit`` pending rows nobody holds (or whose lease ran out), in plan order.

        Rows another sender is claiming at this moment are skipped, not waited for.
        """
        t = ledger_table
        free = t.c.lease_until.is_(None) | (t.c.lease_until < now)
        pick = (
            sa.select(t.c.id)
            .where((t.c.digest == digest) & _PENDING & free)
            .order_by(t.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._tx(write=True) as conn:
            ids = list(conn.execute(pick).scalars())
            if not ids:
                return []
            conn.execute(
                t.update().where(t.c.id.in_(ids)).values(worker=worker, lease_until=now + lease)
            )
            rows = conn.execute(sa.select(t).where(t.c.id.in_(ids)).order_by(t.c.id)).all()
            self._count(conn, worker, now, claimed=len(ids))
        return [as_ledger_row(row) for row in rows]

    def renew_claims(self, digest: str, worker: str, *, now: datetime, lease: timedelta) -> int:
        """Extend the lease of every row ``worker`` holds and has not finished; how many.

        Its ``sending`` rows too: while their lease holds they are in flight, not
        uncertain (see :meth:`in_flight`).
        """
        t = ledger_table
        held = t.c.status.in_(("pending", "sending"))
        with self._tx(write=True) as conn:
            renewed = conn.execute(
                t.update()
                .where((t.c.digest == digest) & (t.c.worker == worker) & held)
                .values(lease_until=now + lease)
            ).rowcount
            conn.execute(
                workers_table.update().where(workers_table.c.worker == worker).values(last_seen=now)
            )
        return int(renewed)

    def release_claims(self, digest: str, worker: str) -> int:
        """Give back the rows ``worker`` holds and has not sent (a stopped run): how many.

        Its rows left ``sending`` lose their lease too: no longer in flight, uncertain.
        """
        t = ledger_table
        mine = (t.c.digest == digest) & (t.c.worker == worker)
        with self._tx(write=True) as conn:
            released = conn.execute(
                t.update().where(mine & _PENDING).values(worker=None, lease_until=None)
            ).rowcount
            conn.execute(
                t.update().where(mine & (t.c.status == "sending")).values(lease_until=None)
            )
        return int(released)

    def in_flight(self, digest: str, *, now: datetime) -> set[int]:
        """The ids of ``digest``'s ``sending`` rows whose sender still holds its lease.

        Such a message is being handed over right now by a live sender; a
        ``sending`` row without a live lease is uncertain.
        """
        t = ledger_table
        query = sa.select(t.c.id).where(
            (t.c.digest == digest) & (t.c.status == "sending") & (t.c.lease_until >= now)
        )
        with self._tx() as conn:
            return set(conn.execute(query).scalars())

    def next_lease_end(
        self, digest: str, *, now: datetime, other_than: str | None = None
    ) -> datetime | None:
        """When the soonest lease on a pending or in-flight row runs out; None if none holds.

        ``other_than`` leaves out that sender's own rows (those it put back after a
        temporary failure, which it does not try again in the same run).
        """
        t = ledger_table
        # A sending row with a live lease is in flight: its sender will finish it.
        held = (
            (t.c.digest == digest)
            & t.c.status.in_(("pending", "sending"))
            & (t.c.lease_until >= now)
        )
        if other_than is not None:
            held = held & (t.c.worker != other_than)
        query = sa.select(sa.func.min(t.c.lease_until)).where(held)
        with self._tx() as conn:
            end: datetime | None = conn.execute(query).scalar()  # min() keeps the column's type
        return end

    def ledger_counts(self, digest: str) -> dict[str, int]:
        """How many of the period's rows are in each status (one query, however many rows)."""
        t = ledger_table
        query = sa.select(t.c.status, sa.func.count()).where(t.c.digest == digest)
        counts = {status: 0 for status in LEDGER_STATUSES}
        with self._tx() as conn:
            for status, count in conn.execute(query.group_by(t.c.status)):
                counts[status] = int(count)
        return counts

    # --- the senders ----------------------------------------------------------------------

    def register_sender(
        self, worker: str, digest: str, *, host: str, pid: int, now: datetime
    ) -> None:
        """Record a sender process of ``digest`` (its counts start at 0)."""
        try:
            with self._tx(write=True) as conn:
                conn.execute(
                    workers_table.insert().values(
                        worker=worker,
                        digest=digest,
                        host=host,
                        pid=pid,
                        started_at=now,
                        last_seen=now,
                        finished_at=None,
                        claimed=0,
                        sent=0,
                        failed=0,
                        uncertain=0,
                    )
                )
        except Conflict:
            pass  # registered already: worker names are unique per process

    def count_sender(self, worker: str, *, now: datetime, **counts: int) -> None:
        """Add to a sender's counts (``sent=1``, ``failed=1``, ...) and note it as seen."""
        with self._tx(write=True) as conn:
            self._count(conn, worker, now, **counts)

    def finish_sender(self, worker: str, *, now: datetime) -> None:
        """A sender is done with its period."""
        with self._tx(write=True) as conn:
            conn.execute(
                workers_table.update()
                .where(workers_table.c.worker == worker)
                .values(finished_at=now, last_seen=now)
            )

    def senders(self, digest: str) -> list[SenderRecord]:
        """Every sender that worked on ``digest``, the first started first."""
        query = (
            sa.select(workers_table)
            .where(workers_table.c.digest == digest)
            .order_by(workers_table.c.started_at, workers_table.c.worker)
        )
        with self._tx() as conn:
            rows = conn.execute(query).all()
        return [
            SenderRecord(
                worker=m["worker"],
                host=m["host"],
                pid=m["pid"],
                started_at=m["started_at"],
                last_seen=m["last_seen"],
                finished_at=m["finished_at"],
                claimed=m["claimed"],
                sent=m["sent"],
                failed=m["failed"],
                uncertain=m["uncertain"],
            )
            for m in (row._mapping for row in rows)
        ]

    @staticmethod
    def _count(conn: sa.Connection, worker: str, now: datetime, **counts: int) -> None:
        w = workers_table.c
        values: dict[str, Any] = {name: getattr(w, name) + n for name, n in counts.items() if n}
        values["last_seen"] = now
        conn.execute(workers_table.update().where(w.worker == worker).values(**values))

    # --- the shared budget ------------------------------------------------------------------

    def take_send_slots(
        self, digest: str, count: int, *, every: timedelta, now: datetime
    ) -> datetime:
        """Reserve ``count`` consecutive send slots ``every`` apart; returns when the first is.

        One schedule per period in the database, so ``smtp.rate_limit`` holds for
        all senders together. A schedule that fell behind restarts at ``now``:
        idle time is not saved up for a burst.
        """
        b = budget_table.c
        for _attempt in range(3):
            try:
                with self._tx(write=True) as conn:
                    found = conn.execute(
                        sa.select(b.next_at).where(b.digest == digest).with_for_update()
                    ).scalar()
                    start = now if found is None or found < now else found
                    end = start + every * count
                    if found is None:
                        conn.execute(budget_table.insert().values(digest=digest, next_at=end))
                    else:
                        conn.execute(
                            budget_table.update().where(b.digest == digest).values(next_at=end)
                        )
                    return start
            except Conflict:
                continue  # another sender made the period's row first: read it again
        raise Conflict(f"store {self.url}: send budget of {digest}: conflicting writers")

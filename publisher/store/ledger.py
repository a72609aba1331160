"""The send ledger: one row per (digest, subscriber), and what makes "exactly once" possible.

A digest send is planned as one row per (digest, subscriber), protected by a
UNIQUE constraint, then walks ``pending -> sending -> sent``:

* ``mark_sending`` claims a pending row with a conditional UPDATE, so two
  processes can never both hand the same message to the server;
* ``mark_sent`` is called only after the server accepted the message, and
  records the posts it carried as delivered in the same transaction;
* a row left in ``sending`` (the process died, or the connection dropped after
  DATA) is *uncertain*: it is never retried automatically, only ``resolve``\\ d
  by an operator.

:class:`LedgerOps` is that part of :class:`~publisher.store.Store`. It picks
the :class:`~.send_path.SendPath` the status changes go through: raw sqlite3
(:mod:`.sqlite_send`) for a SQLite file, psycopg itself (:mod:`.postgres_send`)
for PostgreSQL through psycopg, else SQLAlchemy (:mod:`.sqlalchemy_send`);
``raw_send=False`` keeps SQLAlchemy for those too. Never writes a subscriber or
a run.
"""

from __future__ import annotations

import threading
from collections.abc import Container, Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.errors import StoreError
from publisher.store.database import Conflict, Database, detail
from publisher.store.postgres_send import PostgresSendPath
from publisher.store.schema import (
    as_ledger_row,
    deliveries_table,
    ledger_table,
    runs_table,
    subscribers_table,
)
from publisher.store.send_path import (
    RESOLVED_UNSENT,
    TO_FAILED,
    TO_PENDING,
    TO_SENDING,
    SendPath,
)
from publisher.store.sqlalchemy_send import DELIVERED, SqlAlchemySendPath, deliver, transition
from publisher.store.sqlite_send import SqliteSendPath
from publisher.store.values import LEDGER_STATUSES, LedgerRow, check_choice

__all__ = ["LedgerOps"]

_CHUNK = 500  # rows per IN (...) list: under every database's parameter limit
_BULK = 5000  # rows per bulk insert, and ids per IN (...) list when planning


class LedgerOps(Database):
    """The planned messages of each digest and where their sending stands."""

    def __init__(self, url: str, *, raw_send: bool = True) -> None:
        super().__init__(url)
        self._portable = SqlAlchemySendPath(self._tx)
        # In-memory SQLite is one connection shared by everything (tests), and other
        # drivers have no raw path: both keep the portable one.
        driver = "sqlalchemy"
        if raw_send and self._sqlite_file:
            driver = "sqlite3"
        elif raw_send and self._engine.dialect.driver == "psycopg":
            driver = "psycopg"
        self._driver = driver
        self._raw: SqliteSendPath | PostgresSendPath | None = None  # opened on first use
        self._raw_lock = threading.Lock()

    @property
    def send_path_name(self) -> str:
        """Which path ledger status changes take: "sqlite3", "psycopg" or "sqlalchemy".

        The raw driver's for a SQLite file or PostgreSQL through psycopg, unless the
        store was opened with ``raw_send=False``; SQLAlchemy for everything else.
        """
        return self._driver

    def close(self) -> None:
        """Release every connection, the raw send path's too."""
        self._closed = True  # first: no raw connection is opened from now on
        with self._raw_lock:
            raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()
        super().close()

    def _send_path(self) -> SendPath:
        """The path ledger status changes go through (see :attr:`raw_sqlite`)."""
        if self._driver == "sqlalchemy":
            return self._portable
        with self._raw_lock:
            self._check_open()
            if self._raw is None:
                path = SqliteSendPath if self._driver == "sqlite3" else PostgresSendPath
                try:
                    self._raw = path(self._engine, self.url)
                except sa.exc.SQLAlchemyError as exc:
                    raise StoreError(f"store {self.url}: {detail(exc)}") from exc
            return self._raw

    # --- planning ---------------------------------------------------------------------------

    def _plan_missing(
        self,
        conn: Connection,
        digest: str,
        found: Container[int],
        items: Sequence[tuple[int, Sequence[str], str]],
        now: datetime,
    ) -> None:
        """Insert the rows of ``items`` whose subscribers ``found`` (the period's) lacks, in bulk.

        A chunk at a time, values made just before they go in: the values of a
        hundred thousand rows at once took a hundred megabytes.
        """
        missing: dict[int, tuple[Sequence[str], str]] = {}
        for sid, post_ids, message_id in items:
            if sid not in found:
                missing.setdefault(sid, (post_ids, message_id))
        ids = list(missing)
        for start in range(0, len(ids), _BULK):
            chunk = ids[start : start + _BULK]
            query = sa.select(subscribers_table.c.id, subscribers_table.c.email)
            emails = dict(conn.execute(query.where(subscribers_table.c.id.in_(chunk))).all())
            values = []
            for sid in chunk:
                if sid not in emails:
                    raise StoreError(f"subscriber {sid}: not found")
                post_ids, message_id = missing[sid]
                values.append(
                    {
                        "digest": digest,
                        "subscriber_id": sid,
                        "email": emails[sid],
                        "status": "pending",
                        "post_ids": [str(p) for p in post_ids],
                        "message_id": message_id,
                        "attempts": 0,
                        "error": "",
                        "created_at": now,
                        "updated_at": now,
                        "sent_at": None,
                    }
                )
            conn.execute(ledger_table.insert(), values)

    def plan_send(
        self,
        digest: str,
        subscriber_id: int,
        post_ids: Sequence[str],
        message_id: str,
        *,
        now: datetime,
    ) -> LedgerRow:
        """Plan one message as pending; if it is already planned, return it unchanged."""
        return self.plan_sends(digest, [(subscriber_id, post_ids, message_id)], now=now)[0]

    def plan_sends(
        self,
        digest: str,
        plans: Iterable[tuple[int, Sequence[str], str]],
        *,
        now: datetime,
    ) -> list[LedgerRow]:
        """``plan_send`` for many (subscriber_id, post_ids, message_id) in one transaction.

        Planning ten thousand messages one commit at a time costs ten thousand
        disk syncs; this costs one, and is just as idempotent. Rows come back in
        the order of ``plans``.
        """
        items = list(plans)
        period = sa.select(ledger_table).where(ledger_table.c.digest == digest)
        for _attempt in range(2):
            try:
                with self._tx(write=True) as conn:
                    # The period's rows read whole, before and after: two queries
                    # however many subscribers, where 500 at a time took 800 for 100,000.
                    # Made values as they are read: a hundred thousand rows are not
                    # held twice, as database rows and as values.
                    found = {r.subscriber_id: as_ledger_row(r) for r in conn.execute(period)}
                    if any(sid not in found for sid, _, _ in items):
                        self._plan_missing(conn, digest, found, items, now)
                        del found
                        found = {r.subscriber_id: as_ledger_row(r) for r in conn.execute(period)}
                return [found[sid] for sid, _, _ in items]
            except Conflict:
                # Another process planned the same row between our read and insert
                # (possible on PostgreSQL; SQLite's IMMEDIATE lock prevents it): the
                # retry finds its row and returns it.
                continue
        raise StoreError(f"digest {digest}: cannot plan sends (conflicting writers)")

    # --- reading ----------------------------------------------------------------------------

    def ledger(self, digest: str, status: str | None = None) -> list[LedgerRow]:
        """The planned messages of one digest (with this status, if given), in plan order."""
        query = (
            sa.select(ledger_table)
            .where(ledger_table.c.digest == digest)
            .order_by(ledger_table.c.id)
        )
        if status is not None:
            check_choice(status, LEDGER_STATUSES, "ledger status")
            query = query.where(ledger_table.c.status == status)
        with self._tx() as conn:
            return [as_ledger_row(row) for row in conn.execute(query)]

    def get_ledger_row(self, row_id: int) -> LedgerRow | None:
        """One ledger row by id, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(ledger_table).where(ledger_table.c.id == row_id)).first()
        return None if row is None else as_ledger_row(row)

    def delivered_post_ids(self, subscriber_id: int) -> set[str]:
        """Every post already delivered to this subscriber by any digest."""
        with self._tx() as conn:
            return set(conn.execute(DELIVERED, {"subscriber_id": subscriber_id}).scalars())

    def delivered_post_ids_by_subscriber(
        self, subscriber_ids: Iterable[int]
    ) -> dict[int, set[str]]:
        """``delivered_post_ids`` for many subscribers, in one transaction.

        Planning a digest asks for every subscriber; one query per subscriber
        costs more than the rows it reads. Subscribers without deliveries get
        an empty set.
        """
        ids = list(dict.fromkeys(subscriber_ids))
        found: dict[int, set[str]] = {sid: set() for sid in ids}
        columns = (deliveries_table.c.subscriber_id, deliveries_table.c.post_id)
        # Each post id is kept once, however many subscribers it went to: a hundred
        # thousand subscribers' histories are millions of rows but a few hundred posts.
        shared: dict[str, str] = {}
        with self._tx() as conn:
            if len(ids) > _BULK:
                # Most of the list: one pass over every delivery beats hundreds of IN lists.
                query = sa.select(*columns).execution_options(yield_per=_BULK)
                for subscriber_id, post_id in conn.execute(query):
                    bucket = found.get(subscriber_id)
                    if bucket is not None:
                        bucket.add(shared.setdefault(post_id, post_id))
                return found
            for start in range(0, len(ids), _CHUNK):
                query = sa.select(*columns).where(
                    deliveries_table.c.subscriber_id.in_(ids[start : start + _CHUNK])
                )
                for subscriber_id, post_id in conn.execute(query):
                    found[subscriber_id].add(shared.setdefault(post_id, post_id))
        return found

    # --- the send loop's status changes -----------------------------------------------------

    def mark_sending(self, row_id: int, *, now: datetime) -> None:
        """Claim a pending row before handing its message over; StoreError if not pending.

        The claim is what stops two processes from sending the same message.
        """
        self._send_path().move(TO_SENDING, row_id, now)

    def mark_sent(self, row_id: int, *, now: datetime, provider_id: str = "") -> None:
        """The server accepted the message: mark it sent and its posts delivered, atomically.

        ``provider_id``: the id an HTTP API provider gave the accepted message.
        """
        self._send_path().mark_sent(row_id, now, provider_id)

    def mark_failed(self, row_id: int, error: str, *, now: datetime) -> None:
        """A permanent failure for this recipient; the row is never retried."""
        self._send_path().move(TO_FAILED, row_id, now, error)

    def mark_pending(self, row_id: int, error: str, *, now: datetime) -> None:
        """A temporary failure: the message was certainly not delivered; retry later."""
        self._send_path().move(TO_PENDING, row_id, now, error)

    def resolve(self, row_id: int, *, sent: bool, now: datetime) -> None:
        """An operator's verdict on an uncertain ``sending`` row.

        ``sent=True`` records it exactly like ``mark_sent``; ``sent=False`` puts it
        back to pending so the next run sends it.
        """
        with self._tx(write=True) as conn:
            if sent:
                deliver(conn, row_id, now)
            else:
                transition(conn, RESOLVED_UNSENT, row_id, now)

    def retry_failed(
        self,
        digest: str,
        *,
        now: datetime,
        subscriber_ids: Iterable[int] | None = None,
        skip_statuses: Sequence[str] = (),
    ) -> int:
        """Put the failed rows of a period (of these subscribers, if given; not of
        subscribers with one of ``skip_statuses``) back to pending, for a cause that
        has been fixed; returns how many.

        A period recorded as done becomes failed (something is owed) in the same
        transaction, so that rows put back are never left pending under a run
        that says all went out, even if the send that follows is interrupted.
        """
        where = (ledger_table.c.digest == digest) & (ledger_table.c.status == "failed")
        if subscriber_ids is not None:
            where = where & ledger_table.c.subscriber_id.in_(list(subscriber_ids))
        if skip_statuses:
            skipped = sa.select(subscribers_table.c.id).where(
                subscribers_table.c.status.in_(list(skip_statuses))
            )
            where = where & ledger_table.c.subscriber_id.not_in(skipped)
        with self._tx(write=True) as conn:
            result = conn.execute(
                ledger_table.update()
                .where(where)
                .values(
                    status="pending",
                    error="retried by the operator",
                    updated_at=now,
                    # Free for the next sender at once, whoever last held it.
                    worker=None,
                    lease_until=None,
                )
            )
            count = int(result.rowcount)
            if count:
                conn.execute(
                    runs_table.update()
                    .where((runs_table.c.digest == digest) & (runs_table.c.status == "done"))
                    .values(status="failed", note="failed messages put back by digest retry")
                )
        return count

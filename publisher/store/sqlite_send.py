"""The fast send path: ledger moves and deliveries on a raw sqlite3 connection of its own.

A send run commits twice per message (``sending`` before the hand-over,
``sent`` after it), ten thousand messages in a row. Through SQLAlchemy each
commit costs about half a millisecond of Python besides SQLite's own work
(pool checkout, events, result wrapping); here it is ``BEGIN IMMEDIATE``, one
or two statements that sqlite3 keeps prepared, and ``COMMIT``, just as
durable. :class:`SqliteSendPath` implements the same
:class:`~.send_path.SendPath` as :mod:`.sqlalchemy_send`, with the same
moves (:attr:`~.send_path.Move.sql`) and the same errors, and the store's
ledger tests run against both. For SQLite files only; never used for
anything but the moves and ``mark_sent``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy.engine import Engine

from publisher.errors import StoreError
from publisher.store.schema import UtcDateTime, ledger_table
from publisher.store.send_path import TO_SENT, Move, refused

__all__ = ["SqliteSendPath"]

_T = TypeVar("_T")
_ADD_DELIVERIES = (
    "INSERT INTO deliveries (subscriber_id, post_id, digest, delivered_at)"
    " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_ROW_STATUS = "SELECT status FROM send_ledger WHERE id = ?"


class SqliteSendPath:
    """The send loop's status changes, on a SQLite connection of their own.

    The connection comes from the engine's pool, so it has the same pragmas
    (WAL, synchronous=FULL, busy timeout, foreign keys). Sender threads share
    it behind a lock: a thread waiting for a Python lock wakes as soon as it
    is free, where two connections would meet SQLite's busy handler, which
    sleeps for milliseconds. Times and JSON go through the column types' own
    converters, so rows read back exactly as if SQLAlchemy wrote them.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self.url = url
        self._pooled = engine.raw_connection()
        self._db = cast(sqlite3.Connection, self._pooled.driver_connection)
        self._lock = threading.Lock()
        dialect = engine.dialect
        time_type = UtcDateTime().dialect_impl(dialect)
        self._time = cast(Callable[[datetime], Any], time_type.bind_processor(dialect))
        json_type = ledger_table.c.post_ids.type.dialect_impl(dialect)
        self._json = cast(Callable[[Any], Any], json_type.result_processor(dialect, None))

    def close(self) -> None:
        """Give the connection back to the engine's pool."""
        with self._lock:
            self._pooled.close()

    def _transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one committed write transaction; database errors become StoreError."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                result = work(db)
                db.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.url}: {exc}") from exc
            finally:
                if db.in_transaction:
                    db.rollback()

    def _apply(
        self,
        db: sqlite3.Connection,
        move: Move,
        row_id: int,
        now: Any,
        error: str,
        provider_id: str = "",
    ) -> tuple[Any, ...] | None:
        params: dict[str, Any] = {"row_id": row_id, "now": now}
        if move.takes_error:
            params["error"] = error
        if move.takes_provider_id:
            params["provider_id"] = provider_id or None
        cursor = db.execute(move.sql, params)
        if move.returns_row:
            rows = cursor.fetchall()
            if rows:
                return tuple(rows[0])
        elif cursor.rowcount == 1:
            return None
        found = db.execute(_ROW_STATUS, (row_id,)).fetchone()
        raise refused(move, row_id, None if found is None else found[0])

    def _stamp(self, now: datetime) -> Any:
        """``now`` as the column stores it; a naive time is refused as on the other path."""
        try:
            return self._time(now)
        except ValueError as exc:
            raise StoreError(f"store {self.url}: {exc}") from exc

    def move(self, move: Move, row_id: int, now: datetime, error: str = "") -> None:
        """Apply ``move`` to one row; StoreError if its status does not allow it."""
        stamp = self._stamp(now)
        self._transaction(lambda db: self._apply(db, move, row_id, stamp, error))

    def mark_sent(self, row_id: int, now: datetime, provider_id: str = "") -> None:
        """``sending -> sent`` and the row's posts delivered, in one transaction."""
        stamp = self._stamp(now)

        def work(db: sqlite3.Connection) -> None:
            moved = self._apply(db, TO_SENT, row_id, stamp, "", provider_id)
            assert moved is not None  # TO_SENT returns the row it moved
            subscriber_id, post_ids, digest = moved
            posts = dict.fromkeys(str(p) for p in self._json(post_ids))
            # A post delivered before keeps the digest and time it first went out with.
            db.executemany(_ADD_DELIVERIES, [(subscriber_id, p, digest, stamp) for p in posts])

        self._transaction(work)

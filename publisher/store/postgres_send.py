"""The fast send path on PostgreSQL: one round trip per ledger change, on psycopg directly.

Through SQLAlchemy a message's two changes cost ten round trips to the
server: a pool ping, ``BEGIN``, the statement(s) and ``COMMIT`` for each,
and ``mark_sent`` reads the row's delivered posts before adding the others.
Sender processes on several machines each wait for every one of them. Here
each sender thread keeps a psycopg connection of its own in autocommit
mode, and each change is one statement, so one round trip and one
transaction: a move is its ``UPDATE``; ``mark_sent`` is one statement whose
data-modifying ``WITH`` marks the row sent and adds its posts to the
deliveries (``ON CONFLICT DO NOTHING`` keeps a post delivered before with
the digest and time it first went out with), atomically as one statement is.
psycopg prepares a statement on the server once it has run a few times.

:class:`PostgresSendPath` implements the same :class:`~.send_path.SendPath`
as :mod:`.sqlalchemy_send` and :mod:`.sqlite_send`, with the same moves
(:attr:`~.send_path.Move.sql`) and errors; the store's ledger tests run
against all three. A connection that broke is closed and the next change
opens a new one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import psycopg
from sqlalchemy.engine import Engine

from publisher.errors import StoreError
from publisher.store.schema import UtcDateTime
from publisher.store.send_path import TO_SENT, Move, refused

__all__ = ["PostgresSendPath"]

_ROW_STATUS = "SELECT status FROM send_ledger WHERE id = %(row_id)s"
_NAMED = re.compile(r":(\w+)")

# Post ids are sorted, so concurrent transactions take the deliveries' key locks in
# one order (as the other paths do). RETURNING of the UPDATE tells whether it moved.
_MARK_SENT = """\
WITH moved AS (
    {update}
), added AS (
    INSERT INTO deliveries (subscriber_id, post_id, digest, delivered_at)
    SELECT DISTINCT moved.subscriber_id, post.id, moved.digest, %(now)s
    FROM moved CROSS JOIN LATERAL json_array_elements_text(moved.post_ids) AS post(id)
    ORDER BY post.id
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM moved"""


def _psycopg(sql: str) -> str:
    """A move's SQL (``:name`` parameters, as sqlite3 takes them) in psycopg's style."""
    return _NAMED.sub(r"%(\1)s", sql)


class PostgresSendPath:
    """The send loop's status changes on PostgreSQL, a connection per sender thread."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.url = url
        self._engine = engine
        self._local = threading.local()
        self._open: set[psycopg.Connection[Any]] = set()
        self._lock = threading.Lock()
        self._closed = False
        dialect = engine.dialect
        time_type = UtcDateTime().dialect_impl(dialect)
        self._time = cast(Callable[[datetime], Any], time_type.bind_processor(dialect))
        self._mark_sent = _MARK_SENT.format(update=_psycopg(TO_SENT.sql))

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            self._closed = True
            connections, self._open = self._open, set()
        for db in connections:
            db.close()

    def _connection(self) -> psycopg.Connection[Any]:
        db: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        if db is not None and not db.closed:
            return db
        pooled = self._engine.raw_connection()
        db = cast(psycopg.Connection[Any], pooled.driver_connection)
        # Ours from now on: its autocommit mode must never reach the pool's other users.
        pooled.detach()
        if db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            db.rollback()
        db.autocommit = True
        with self._lock:
            if self._closed:
                db.close()
                raise StoreError(f"store {self.url}: the store is closed")
            self._open.add(db)
        self._local.db = db
        return db

    def _execute(self, sql: str, params: dict[str, Any]) -> psycopg.Cursor[Any]:
        """Run one statement on this thread's connection; database errors become StoreError."""
        try:
            db = self._connection()
        except Exception as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"store {self.url}: cannot connect: {exc}") from exc
        try:
            return db.execute(sql, params)
        except psycopg.Error as exc:
            if db.broken or db.closed:
                with self._lock:
                    self._open.discard(db)
                db.close()
                self._local.db = None
            raise StoreError(f"store {self.url}: {exc}".strip()) from exc

    def _stamp(self, now: datetime) -> Any:
        """``now`` as the column stores it; a naive time is refused as on the other paths."""
        try:
            return self._time(now)
        except ValueError as exc:
            raise StoreError(f"store {self.url}: {exc}") from exc

    def _refused(self, move: Move, row_id: int) -> StoreError:
        found = self._execute(_ROW_STATUS, {"row_id": row_id}).fetchone()
        return refused(move, row_id, None if found is None else found[0])

    def move(self, move: Move, row_id: int, now: datetime, error: str = "") -> None:
        """Apply ``move`` to one row; StoreError if its status does not allow it."""
        params: dict[str, Any] = {"row_id": row_id, "now": self._stamp(now)}
        if move.takes_error:
            params["error"] = error
        if move.takes_provider_id:
            params["provider_id"] = None
        cursor = self._execute(_psycopg(move.sql), params)
        moved = cursor.fetchone() is not None if move.returns_row else cursor.rowcount == 1
        if not moved:
            raise self._refused(move, row_id)

    def mark_sent(self, row_id: int, now: datetime, provider_id: str = "") -> None:
        """``sending -> sent`` and the row's posts delivered: one statement, one round trip."""
        params = {"row_id": row_id, "now": self._stamp(now), "provider_id": provider_id or None}
        row = self._execute(self._mark_sent, params).fetchone()
        if row is None or row[0] != 1:
            raise self._refused(TO_SENT, row_id)

"""The portable send path: ledger moves and deliveries through SQLAlchemy, on any database.

:class:`SqlAlchemySendPath` implements :class:`~.send_path.SendPath` with the
store's own transactions, so it serves PostgreSQL, an in-memory SQLite
database, and a SQLite file when the raw path is turned off. Its two steps,
:func:`transition` and :func:`deliver`, also run inside other transactions
(an operator's ``resolve``). Never opens an engine or a connection of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from publisher.store.schema import deliveries_table, ledger_table
from publisher.store.send_path import TO_SENT, Move, refused

__all__ = ["DELIVERED", "SqlAlchemySendPath", "Transaction", "deliver", "transition"]

# What the store's ``_tx`` is: one committed transaction (write=True: take the write lock).
Transaction = Callable[[bool], AbstractContextManager[Connection]]

_ROW_STATUS = sa.select(ledger_table.c.status).where(ledger_table.c.id == sa.bindparam("row_id"))
DELIVERED = sa.select(deliveries_table.c.post_id).where(
    deliveries_table.c.subscriber_id == sa.bindparam("subscriber_id")
)
_DELIVERED_AMONG = DELIVERED.where(
    deliveries_table.c.post_id.in_(sa.bindparam("post_ids", expanding=True))
)


# The insert of delivered posts, leaving alone a row another transaction added meanwhile.
#
# Under PostgreSQL's READ COMMITTED, two transactions (two digests that carry the
# same post to one subscriber, or an operator's ``resolve``) can both find a post
# undelivered; ON CONFLICT makes the second wait for the first and keep its row
# instead of failing ``mark_sent`` for a message the server already accepted.
# Built once per dialect, like the moves: ``deliver`` runs once per message.
_ADD_DELIVERIES: dict[str, sa.Insert] = {
    "postgresql": postgresql.insert(deliveries_table).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(deliveries_table).on_conflict_do_nothing(),
}
_ADD_DELIVERIES_ELSEWHERE = deliveries_table.insert()


def transition(
    conn: Connection,
    move: Move,
    row_id: int,
    now: datetime,
    error: str = "",
    provider_id: str = "",
) -> sa.Row[Any] | None:
    """Move a row on, only from an allowed status: the check and the write are one step.

    Returns the moved row's (subscriber_id, post_ids, digest) for a move that
    returns its row, else None; StoreError if the row's status forbids the move.
    """
    params: dict[str, Any] = {"row_id": row_id, "now": now}
    if move.takes_error:
        params["error"] = error
    if move.takes_provider_id:
        params["provider_id"] = provider_id or None
    result = conn.execute(move.statement, params)
    if move.returns_row:
        moved = result.first()
        if moved is not None:
            return moved
    elif result.rowcount == 1:
        return None
    raise refused(move, row_id, conn.execute(_ROW_STATUS, {"row_id": row_id}).scalar())


def deliver(conn: Connection, row_id: int, now: datetime, provider_id: str = "") -> None:
    """``sending -> sent`` and the row's posts recorded as delivered, in ``conn``'s transaction.

    A post delivered before keeps the digest and time it first went out with.
    """
    row = transition(conn, TO_SENT, row_id, now, provider_id=provider_id)
    assert row is not None  # TO_SENT returns the row it moved
    post_ids = list(dict.fromkeys(row.post_ids))
    if not post_ids:
        return
    have = set(
        conn.execute(
            _DELIVERED_AMONG, {"subscriber_id": row.subscriber_id, "post_ids": post_ids}
        ).scalars()
    )
    missing = [p for p in post_ids if p not in have]
    if missing:
        conn.execute(
            _ADD_DELIVERIES.get(conn.dialect.name, _ADD_DELIVERIES_ELSEWHERE),
            [
                {
                    "subscriber_id": row.subscriber_id,
                    "post_id": post_id,
                    "digest": row.digest,
                    "delivered_at": now,
                }
                # Sorted: concurrent transactions take the keys' locks in one order.
                for post_id in sorted(missing)
            ],
        )


class SqlAlchemySendPath:
    """:class:`~.send_path.SendPath` through the store's transactions."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def move(self, move: Move, row_id: int, now: datetime, error: str = "") -> None:
        with self._tx(True) as conn:
            transition(conn, move, row_id, now, error)

    def mark_sent(self, row_id: int, now: datetime, provider_id: str = "") -> None:
        with self._tx(True) as conn:
            deliver(conn, row_id, now, provider_id)

    def close(self) -> None:
        """Nothing of its own to release: the connections are the store's."""

"""The send loop's status changes of a ledger row, and the interface that applies them.

A send run changes one row's status once or twice per message
(``pending -> sending -> sent``, or on to ``failed``/back to ``pending``).
Each change is a :class:`Move`: which statuses it starts from and what it
writes, as a prebuilt SQLAlchemy statement and as the same SQL for sqlite3.
:class:`SendPath` is what applies moves; it has three implementations behind
this one interface, chosen by the store and run by the same tests:

* :mod:`.sqlalchemy_send`, the portable path (any database, in-memory SQLite);
* :mod:`.sqlite_send`, raw sqlite3 for a SQLite file, for speed: it skips
  SQLAlchemy's per-commit overhead, which costs more than SQLite's own work;
* :mod:`.postgres_send`, psycopg itself for PostgreSQL: one round trip a change.

Defines statements only: never connects or executes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.store.schema import UtcDateTime, ledger_table

__all__ = [
    "RESOLVED_UNSENT",
    "TO_FAILED",
    "TO_PENDING",
    "TO_SENDING",
    "TO_SENT",
    "Move",
    "SendPath",
    "refused",
]


@dataclass(frozen=True)
class Move:
    """A ledger status change, allowed only from some statuses.

    Built once at import: a send run executes these once or twice per message,
    and SQLAlchemy's per-call statement construction costs more than the
    database work itself.
    """

    statement: sa.Update
    sql: str  # the same change for SQLite's own driver (see .sqlite_send)
    allowed: tuple[str, ...]
    action: str  # for the error message: "cannot <action> a message that is <status>"
    returns_row: bool  # the statement returns (subscriber_id, post_ids, digest) of the row
    takes_error: bool  # the statement sets the error column from :error
    takes_provider_id: bool = False  # ... and the provider_id column from :provider_id


class SendPath(Protocol):
    """What applies moves to the ledger, each in one committed transaction of its own."""

    def move(self, move: Move, row_id: int, now: datetime, error: str = "") -> None:
        """Apply ``move`` to one row; StoreError (see :func:`refused`) if its status forbids."""
        ...

    def mark_sent(self, row_id: int, now: datetime, provider_id: str = "") -> None:
        """``sending -> sent`` and the row's posts recorded as delivered, atomically.

        ``provider_id``: the id an HTTP API gave the message ("" stores NULL).
        """
        ...

    def close(self) -> None:
        """Release what the path holds of its own; the store closes the engine."""
        ...


def refused(move: Move, row_id: int, status: str | None) -> StoreError:
    """Why ``move`` did not apply to ``row_id``, whose status is ``status`` (None: no row)."""
    if status is None:
        return StoreError(f"ledger row {row_id}: not found")
    return StoreError(
        f"ledger row {row_id}: cannot {move.action} a message that is {status}"
        f" (only when {' or '.join(move.allowed)})"
    )


def _move(
    allowed: tuple[str, ...], action: str, sql: str, *, returning: bool = False, **values: Any
) -> Move:
    where = (ledger_table.c.id == sa.bindparam("row_id")) & ledger_table.c.status.in_(allowed)
    statement = ledger_table.update().where(where).values(**values)
    if returning:
        # RETURNING (SQLite 3.35+, PostgreSQL) saves reading the row again.
        statement = statement.returning(
            ledger_table.c.subscriber_id, ledger_table.c.post_ids, ledger_table.c.digest
        )
    # An extra parameter named after a column would become one more SET clause,
    # so :error is passed only to the statements that set it.
    takes_error = isinstance(values.get("error"), sa.BindParameter)
    takes_provider_id = isinstance(values.get("provider_id"), sa.BindParameter)
    statuses = ", ".join(f"'{status}'" for status in allowed)
    raw = f"UPDATE send_ledger SET {sql} WHERE id = :row_id AND status IN ({statuses})"
    if returning:
        raw += " RETURNING subscriber_id, post_ids, digest"
    return Move(statement, raw, allowed, action, returning, takes_error, takes_provider_id)


def _now() -> sa.BindParameter[datetime]:
    return sa.bindparam("now", type_=UtcDateTime())


TO_SENDING = _move(
    ("pending",),
    "start sending",
    "status = 'sending', attempts = attempts + 1, updated_at = :now",
    status="sending",
    attempts=ledger_table.c.attempts + 1,
    updated_at=_now(),
)
_sent_at = _now()
TO_SENT = _move(
    ("sending",),
    "mark as sent",
    "status = 'sent', error = '', sent_at = :now, updated_at = :now, provider_id = :provider_id",
    returning=True,
    status="sent",
    error="",
    provider_id=sa.bindparam("provider_id"),
    sent_at=_sent_at,
    updated_at=_sent_at,
)
TO_FAILED = _move(
    ("pending", "sending"),
    "mark as failed",
    "status = 'failed', error = :error, updated_at = :now",
    status="failed",
    error=sa.bindparam("error"),
    updated_at=_now(),
)
TO_PENDING = _move(
    ("sending", "pending"),
    "return to pending",
    "status = 'pending', error = :error, updated_at = :now",
    status="pending",
    error=sa.bindparam("error"),
    updated_at=_now(),
)
RESOLVED_UNSENT = _move(
    ("sending",),
    "resolve",
    "status = 'pending', error = 'resolved as not sent', updated_at = :now,"
    " worker = NULL, lease_until = NULL",
    status="pending",
    error="resolved as not sent",
    updated_at=_now(),
    # Free for the next sender at once: its old sender's lease means nothing now.
    worker=None,
    lease_until=None,
)

"""The tables of the store, how their rows read as values, and the schema's creation.

Portable SQL (SQLite and PostgreSQL): the table definitions, the column type
that keeps every time in UTC, the conversion of a row to a
:mod:`~publisher.store.values` dataclass, and :func:`create_schema`, which makes
the tables and checks the schema version inside a transaction it is given.
Never opens a connection or a transaction itself: :mod:`.database` does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from publisher.errors import StoreError
from publisher.store.values import SCHEMA_VERSION, DigestRun, LedgerRow, Subscriber

__all__ = [
    "UtcDateTime",
    "as_ledger_row",
    "as_run",
    "as_subscriber",
    "bounce_events_table",
    "create_schema",
    "deliveries_table",
    "ledger_table",
    "meta_table",
    "metadata",
    "runs_table",
    "schema_version",
    "soft_bounces_table",
    "subscribers_table",
    "suppressions_table",
    "webhook_seen_table",
]


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, UTC stored without zone (portable), aware UTC out.

    A naive datetime is refused: guessing its zone would shift every schedule.
    """

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store needs an aware time")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = sa.MetaData()

meta_table = sa.Table(
    "publisher_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)

subscribers_table = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("email_key", sa.String(254), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("confirmed_at", UtcDateTime, nullable=True),
    # Links in sent mail carry the subscriber id: SQLite must never hand a removed
    # subscriber's id to someone new (without AUTOINCREMENT it reuses the highest).
    sqlite_autoincrement=True,
)

ledger_table = sa.Table(
    "send_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("post_ids", sa.JSON, nullable=False),
    sa.Column("message_id", sa.String(255), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    # Which sender process has taken the row to send, until when (see store.claims):
    # several senders share a period's rows without sending any twice.
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("lease_until", UtcDateTime, nullable=True),
    # The id an HTTP API provider gave the accepted message (NULL for SMTP and the outbox).
    sa.Column("provider_id", sa.String(255), nullable=True),
    sa.UniqueConstraint("digest", "subscriber_id", name="uq_send_ledger_digest_subscriber"),
    # In id order within a status: a sender claims the next pending rows in plan order
    # straight off the index (with (digest, status) alone, every claim sorted all the
    # period's pending rows: 14 ms a claim at 30,000 rows, growing with the list).
    sa.Index("ix_send_ledger_claim", "digest", "status", "id"),
)

#: Columns added to ``send_ledger`` after version 2, with their SQL type, for older databases.
_LEDGER_ADDED = {"worker": "VARCHAR(128)", "lease_until": None, "provider_id": "VARCHAR(255)"}

deliveries_table = sa.Table(
    "deliveries",
    metadata,
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # Unbounded: an id holds the post's file name percent-encoded (nine characters for
    # each Japanese one), and PostgreSQL, unlike SQLite, enforces a VARCHAR's length.
    sa.Column("post_id", sa.Text, primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("delivered_at", UtcDateTime, nullable=False),
)

# Kept apart from subscribers: removing a subscriber must not forget that their
# address bounces, or an import would mail it again.
suppressions_table = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_key", sa.String(254), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

soft_bounces_table = sa.Table(
    "soft_bounces",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email_key", sa.String(254), nullable=False, index=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

# Every bounce and complaint that arrived, with the period of the message when known
# (a VERP return path, or a 5xx while sending): digest status counts them.
bounce_events_table = sa.Table(
    "bounce_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("digest", sa.String(64), nullable=True, index=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "hard" | "soft" | "complaint"
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

# Webhook calls already taken (a provider's event id or signed token): a replay
# of one is refused and changes nothing.
webhook_seen_table = sa.Table(
    "webhook_seen",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
)

# One row per sender process of a period: what ``digest status`` shows of each.
workers_table = sa.Table(
    "send_workers",
    metadata,
    sa.Column("worker", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False, index=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("claimed", sa.Integer, nullable=False, default=0),
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("uncertain", sa.Integer, nullable=False, default=0),
)

# The next free send slot of a period under smtp.rate_limit, shared by every sender.
budget_table = sa.Table(
    "send_budget",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("next_at", UtcDateTime, nullable=False),
)

runs_table = sa.Table(
    "digest_runs",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("uncertain", sa.Integer, nullable=False, default=0),
    sa.Column("note", sa.Text, nullable=False, default=""),
)


def as_subscriber(row: sa.Row[Any]) -> Subscriber:
    """A row of ``subscribers`` as a value."""
    m = row._mapping
    return Subscriber(
        id=m["id"],
        email=m["email"],
        name=m["name"],
        categories=tuple(m["categories"]),
        status=m["status"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        confirmed_at=m["confirmed_at"],
    )


def as_ledger_row(row: sa.Row[Any]) -> LedgerRow:
    """A row of ``send_ledger`` as a value."""
    m = row._mapping
    return LedgerRow(
        id=m["id"],
        digest=m["digest"],
        subscriber_id=m["subscriber_id"],
        email=m["email"],
        status=m["status"],
        post_ids=tuple(m["post_ids"]),
        message_id=m["message_id"],
        attempts=m["attempts"],
        error=m["error"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        sent_at=m["sent_at"],
        provider_id=m.get("provider_id") or "",
    )


def as_run(row: sa.Row[Any]) -> DigestRun:
    """A row of ``digest_runs`` as a value."""
    m = row._mapping
    return DigestRun(
        digest=m["digest"],
        due_at=m["due_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        status=m["status"],
        sent=m["sent"],
        skipped=m["skipped"],
        failed=m["failed"],
        uncertain=m["uncertain"],
        note=m["note"],
    )


# Held while the tables are created, so that processes opening a new PostgreSQL
# database at once do not all create them (SQLite's BEGIN IMMEDIATE does this there).
_SCHEMA_LOCK = 0x7075_626C_6973_6872  # "publishr"
_VERSION = sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")


def create_schema(conn: Connection, url: str) -> None:
    """Create the missing tables and record the version, in the caller's write transaction.

    StoreError if the database was made by a newer publisher (``url`` names it).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
    metadata.create_all(conn)
    found = conn.execute(_VERSION).scalar()
    if found is None:
        conn.execute(meta_table.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
    elif int(found) > SCHEMA_VERSION:
        raise StoreError(
            f"store {url}: schema version {found} is newer than this publisher"
            f" understands ({SCHEMA_VERSION}); upgrade publisher"
        )
    elif int(found) < SCHEMA_VERSION:
        # Tables added since were made by create_all above; columns and indexes here.
        _add_ledger_columns(conn)
        conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_send_ledger_claim ON send_ledger (digest, status, id)"
        )
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_send_ledger_digest_status")
        conn.execute(
            meta_table.update()
            .where(meta_table.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )


def _add_ledger_columns(conn: Connection) -> None:
    """Give an older database's ledger the columns version 3 added (all nullable)."""
    have = {column["name"] for column in sa.inspect(conn).get_columns("send_ledger")}
    # UtcDateTime keeps UTC without a zone, as sa.DateTime makes it on each database.
    time_sql = "TIMESTAMP WITHOUT TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    for name, sql in _LEDGER_ADDED.items():
        if name not in have:
            conn.exec_driver_sql(f"ALTER TABLE send_ledger ADD COLUMN {name} {sql or time_sql}")


def schema_version(conn: Connection) -> int:
    """The schema version recorded in the database."""
    return int(conn.execute(_VERSION).scalar_one())

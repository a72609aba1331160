"""Subscribers, the send ledger and digest runs, kept in one SQL database.

SQLite is the default (``store.url`` in config.yaml); the SQL is portable, so a
PostgreSQL URL works unchanged. Every write is its own committed transaction,
so a process killed at any moment loses nothing it reported as done.

The ledger is what makes "exactly once" possible. A digest send is planned as
one row per (digest, subscriber), protected by a UNIQUE constraint, then walks
``pending -> sending -> sent``:

* ``mark_sending`` claims a pending row with a conditional UPDATE, so two
  processes can never both hand the same message to the server;
* ``mark_sent`` is called only after the server accepted the message, and
  records the posts it carried as delivered in the same transaction;
* a row left in ``sending`` (the process died, or the connection dropped after
  DATA) is *uncertain*: it is never retried automatically, only ``resolve``\\ d
  by an operator.

Times are stored in UTC and returned as aware datetimes; naive datetimes are
refused, because guessing their zone would shift every schedule.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from publisher.errors import StoreError
from publisher.mail.names import clean_name, name_problem

if TYPE_CHECKING:
    from publisher.config import Config

__all__ = [
    "LEDGER_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "SUBSCRIBER_STATUSES",
    "DigestRun",
    "LedgerRow",
    "Store",
    "Subscriber",
    "clean_categories",
    "email_problem",
    "normalize_email",
]

SCHEMA_VERSION = 1
SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed")
LEDGER_STATUSES = ("pending", "sending", "sent", "failed")
RUN_STATUSES = ("running", "done", "failed", "skipped")
BUSY_TIMEOUT_MS = 30_000


# --- values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """One address that may receive digests."""

    id: int
    email: str
    name: str
    categories: tuple[str, ...]  # empty: every category
    status: str  # "pending" | "active" | "unsubscribed"
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None


@dataclass(frozen=True)
class LedgerRow:
    """One planned message: a digest for one subscriber, and where its sending stands."""

    id: int
    digest: str  # the period key, e.g. "2026-W48"
    subscriber_id: int
    email: str
    status: str  # "pending" | "sending" | "sent" | "failed"
    post_ids: tuple[str, ...]  # fixed when planned, so a resumed run sends the same message
    message_id: str
    attempts: int
    error: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class DigestRun:
    """One digest period's run: when it was due, how it went."""

    digest: str
    due_at: datetime
    started_at: datetime
    finished_at: datetime | None
    status: str  # "running" | "done" | "failed" | "skipped"
    sent: int
    skipped: int
    failed: int
    uncertain: int
    note: str


# --- validation ---------------------------------------------------------------------------

# RFC 5321/5322 dot-atom local part (no quoted strings, no comments): what every
# mail system accepts. Internationalised domains are stored as IDNA (punycode).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})")


def _split_email(text: str) -> tuple[str, str] | str:
    """Return (local, ascii lowercase domain), or the reason ``text`` is not an address."""
    if not text:
        return "is empty"
    if any(c in text for c in "\r\n\x00"):
        return "must not contain line breaks"
    if any(c.isspace() for c in text):
        return "must not contain spaces"
    if text.count("@") != 1:
        return "must contain exactly one '@'"
    local, domain = text.split("@")
    if not local:
        return "has nothing before the '@'"
    if not domain:
        return "has no domain after the '@'"
    if len(local) > 64:
        return "has more than 64 characters before the '@'"
    if not _LOCAL.fullmatch(local):
        return f"has an invalid part before the '@': {local!r}"
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return f"has an invalid domain: {domain!r}"
    labels = domain.split(".")
    if len(labels) < 2:
        return f"domain {domain!r} has no dot"
    if len(domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"has an invalid domain: {domain!r}"
    if not _TLD.fullmatch(labels[-1]):
        return f"domain {domain!r} does not end in a top-level domain"
    if len(local) + 1 + len(domain) > 254:
        return "is longer than 254 characters"
    return local, domain


def email_problem(text: str) -> str | None:
    """Say what is wrong with ``text`` as an email address, or None if it is usable."""
    parts = _split_email(text.strip())
    return parts if isinstance(parts, str) else None


def normalize_email(text: str) -> str:
    """Return the address with surrounding spaces removed and the domain lowercased.

    Raises StoreError("<text>: <what is wrong>") for an unusable address.
    """
    parts = _split_email(text.strip())
    if isinstance(parts, str):
        raise StoreError(f"{text.strip()!r}: not a valid email address: {parts}")
    return f"{parts[0]}@{parts[1]}"


def _email_key(email: str) -> str:
    """The lookup key of an address: normalized, then lowercased entirely.

    Mailboxes differing only in the case of the local part are the same person
    everywhere that matters, so they may not subscribe twice.
    """
    try:
        return normalize_email(email).lower()
    except StoreError:
        return email.strip().lower()


def _one_line(value: str, what: str, limit: int) -> str:
    text = value.strip()
    if any(c in text for c in "\r\n\x00"):
        raise StoreError(f"{what} {text!r}: must be one line")
    if len(text) > limit:
        raise StoreError(f"{what} {text[:20]!r}...: longer than {limit} characters")
    return text


def clean_categories(categories: Iterable[str]) -> tuple[str, ...]:
    """Strip, drop empty and repeated names, keep the order given."""
    seen: dict[str, None] = {}
    for raw in categories:
        name = _one_line(str(raw), "category", 200)
        if name:
            seen[name] = None
    return tuple(seen)


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise StoreError(f"{what} {value!r}: must be one of " + ", ".join(choices))


# --- schema -------------------------------------------------------------------------------


class _UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, UTC stored without zone (portable), aware UTC out."""

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


_metadata = sa.MetaData()

_meta = sa.Table(
    "publisher_meta",
    _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)

_subscribers = sa.Table(
    "subscribers",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("email_key", sa.String(254), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", _UtcDateTime, nullable=False),
    sa.Column("updated_at", _UtcDateTime, nullable=False),
    sa.Column("confirmed_at", _UtcDateTime, nullable=True),
    # Links in sent mail carry the subscriber id: SQLite must never hand a removed
    # subscriber's id to someone new (without AUTOINCREMENT it reuses the highest).
    sqlite_autoincrement=True,
)

_ledger = sa.Table(
    "send_ledger",
    _metadata,
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
    sa.Column("created_at", _UtcDateTime, nullable=False),
    sa.Column("updated_at", _UtcDateTime, nullable=False),
    sa.Column("sent_at", _UtcDateTime, nullable=True),
    sa.UniqueConstraint("digest", "subscriber_id", name="uq_send_ledger_digest_subscriber"),
    sa.Index("ix_send_ledger_digest_status", "digest", "status"),
)

_deliveries = sa.Table(
    "deliveries",
    _metadata,
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
    sa.Column("delivered_at", _UtcDateTime, nullable=False),
)

_runs = sa.Table(
    "digest_runs",
    _metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("due_at", _UtcDateTime, nullable=False),
    sa.Column("started_at", _UtcDateTime, nullable=False),
    sa.Column("finished_at", _UtcDateTime, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("sent", sa.Integer, nullable=False, default=0),
    sa.Column("skipped", sa.Integer, nullable=False, default=0),
    sa.Column("failed", sa.Integer, nullable=False, default=0),
    sa.Column("uncertain", sa.Integer, nullable=False, default=0),
    sa.Column("note", sa.Text, nullable=False, default=""),
)


def _subscriber(row: sa.Row[Any]) -> Subscriber:
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


def _ledger_row(row: sa.Row[Any]) -> LedgerRow:
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
    )


def _run(row: sa.Row[Any]) -> DigestRun:
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


# --- statements of the hot path ----------------------------------------------------------
# A send run executes these once or twice per message. Built once here, they
# skip SQLAlchemy's per-call statement construction, which costs more than the
# database work itself.


@dataclass(frozen=True)
class _Move:
    """A ledger status change, allowed only from some statuses."""

    statement: sa.Update
    sql: str  # the same change for SQLite's own driver (see _SqliteSendPath)
    allowed: tuple[str, ...]
    action: str  # for the error message: "cannot <action> a message that is <status>"
    returns_row: bool  # the statement returns the row it moved
    takes_error: bool  # the statement sets the error column from :error


def _move(
    allowed: tuple[str, ...], action: str, sql: str, *, returning: bool = False, **values: Any
) -> _Move:
    where = (_ledger.c.id == sa.bindparam("row_id")) & _ledger.c.status.in_(allowed)
    statement = _ledger.update().where(where).values(**values)
    if returning:
        # RETURNING (SQLite 3.35+, PostgreSQL) saves reading the row again.
        statement = statement.returning(
            _ledger.c.subscriber_id, _ledger.c.post_ids, _ledger.c.digest
        )
    # An extra parameter named after a column would become one more SET clause,
    # so :error is passed only to the statements that set it.
    takes_error = isinstance(values.get("error"), sa.BindParameter)
    statuses = ", ".join(f"'{status}'" for status in allowed)
    raw = f"UPDATE send_ledger SET {sql} WHERE id = :row_id AND status IN ({statuses})"
    if returning:
        raw += " RETURNING subscriber_id, post_ids, digest"
    return _Move(statement, raw, allowed, action, returning, takes_error)


def _now() -> sa.BindParameter[datetime]:
    return sa.bindparam("now", type_=_UtcDateTime())


_TO_SENDING = _move(
    ("pending",),
    "start sending",
    "status = 'sending', attempts = attempts + 1, updated_at = :now",
    status="sending",
    attempts=_ledger.c.attempts + 1,
    updated_at=_now(),
)
_sent_at = _now()
_TO_SENT = _move(
    ("sending",),
    "mark as sent",
    "status = 'sent', error = '', sent_at = :now, updated_at = :now",
    returning=True,
    status="sent",
    error="",
    sent_at=_sent_at,
    updated_at=_sent_at,
)
_TO_FAILED = _move(
    ("pending", "sending"),
    "mark as failed",
    "status = 'failed', error = :error, updated_at = :now",
    status="failed",
    error=sa.bindparam("error"),
    updated_at=_now(),
)
_TO_PENDING = _move(
    ("sending", "pending"),
    "return to pending",
    "status = 'pending', error = :error, updated_at = :now",
    status="pending",
    error=sa.bindparam("error"),
    updated_at=_now(),
)
_RESOLVED_UNSENT = _move(
    ("sending",),
    "resolve",
    "status = 'pending', error = 'resolved as not sent', updated_at = :now",
    status="pending",
    error="resolved as not sent",
    updated_at=_now(),
)
_ROW_STATUS = sa.select(_ledger.c.status).where(_ledger.c.id == sa.bindparam("row_id"))
_DELIVERED = sa.select(_deliveries.c.post_id).where(
    _deliveries.c.subscriber_id == sa.bindparam("subscriber_id")
)
_DELIVERED_AMONG = _DELIVERED.where(
    _deliveries.c.post_id.in_(sa.bindparam("post_ids", expanding=True))
)


# --- the store ----------------------------------------------------------------------------


class _Conflict(StoreError):
    """A constraint refused a write (a duplicate, usually): the caller names the record."""


def _detail(exc: BaseException) -> str:
    """A database error as one line: PostgreSQL's (libpq's) messages span several."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


# Held while the tables are created, so that processes opening a new PostgreSQL
# database at once do not all create them (SQLite's BEGIN IMMEDIATE does this there).
_SCHEMA_LOCK = 0x7075_626C_6973_6872  # "publishr"


def _add_deliveries(dialect: str) -> sa.Insert:
    """The insert of delivered posts, leaving alone a row another transaction added meanwhile.

    Under PostgreSQL's READ COMMITTED, two transactions (two digests that carry the
    same post to one subscriber, or an operator's ``resolve``) can both find a post
    undelivered; ON CONFLICT makes the second wait for the first and keep its row
    instead of failing ``mark_sent`` for a message the server already accepted.
    """
    if dialect == "postgresql":
        return postgresql.insert(_deliveries).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(_deliveries).on_conflict_do_nothing()
    return _deliveries.insert()


def _set_wal(cursor: Any) -> None:
    """Switch a database to WAL, waiting while another process switches it.

    Changing the journal mode needs the database to itself and SQLite answers
    "database is locked" at once instead of calling the busy handler, so
    several processes opening a new database together (``publisher run`` and
    ``publisher serve`` started at once) retry here within the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _sqlite_engine(url: sa.URL) -> Engine:
    memory = url.database in (None, "", ":memory:")
    engine = sa.create_engine(
        url,
        # One in-memory database must be shared by every connection (tests only).
        poolclass=StaticPool if memory else None,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # sqlite3's own transaction handling starts transactions late and as
        # DEFERRED; we issue BEGIN ourselves (below) so that writers take the
        # write lock first and wait on the busy timeout instead of failing.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not memory:
                _set_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            # FULL: a commit survives a power cut too, so a message marked sent stays sent.
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock at BEGIN: a read-then-write transaction
        # can then never fail halfway with "database is locked".
        write = conn.get_execution_options().get("publisher_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _refused(move: _Move, row_id: int, status: str | None) -> StoreError:
    """Why ``move`` did not apply to ``row_id``, whose status is ``status`` (None: no row)."""
    if status is None:
        return StoreError(f"ledger row {row_id}: not found")
    return StoreError(
        f"ledger row {row_id}: cannot {move.action} a message that is {status}"
        f" (only when {' or '.join(move.allowed)})"
    )


_T = TypeVar("_T")
_ADD_DELIVERIES = (
    "INSERT INTO deliveries (subscriber_id, post_id, digest, delivered_at)"
    " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


class _SqliteSendPath:
    """The send loop's status changes, on a SQLite connection of their own.

    A send run commits twice per message (``sending`` before the hand-over,
    ``sent`` after it), ten thousand messages in a row. Through SQLAlchemy each
    commit costs about half a millisecond of Python besides SQLite's own work
    (pool checkout, events, result wrapping); here it is ``BEGIN IMMEDIATE``,
    one or two statements that sqlite3 keeps prepared, and ``COMMIT``, just as
    durable: the connection comes from the engine's pool, so it has the same
    pragmas (WAL, synchronous=FULL, busy timeout, foreign keys).

    Sender threads share it behind a lock: a thread waiting for a Python lock
    wakes as soon as it is free, where two connections would meet SQLite's busy
    handler, which sleeps for milliseconds. Times and JSON go through the column
    types' own converters, so rows read back exactly as if SQLAlchemy wrote them.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self.url = url
        self._pooled = engine.raw_connection()
        self._db = cast(sqlite3.Connection, self._pooled.driver_connection)
        self._lock = threading.Lock()
        dialect = engine.dialect
        time_type = _UtcDateTime().dialect_impl(dialect)
        self._time = cast(Callable[[datetime], Any], time_type.bind_processor(dialect))
        json_type = _ledger.c.post_ids.type.dialect_impl(dialect)
        self._json = cast(Callable[[Any], Any], json_type.result_processor(dialect, None))

    def close(self) -> None:
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
        self, db: sqlite3.Connection, move: _Move, row_id: int, now: Any, error: str
    ) -> tuple[Any, ...] | None:
        params: dict[str, Any] = {"row_id": row_id, "now": now}
        if move.takes_error:
            params["error"] = error
        cursor = db.execute(move.sql, params)
        if move.returns_row:
            rows = cursor.fetchall()
            if rows:
                return tuple(rows[0])
        elif cursor.rowcount == 1:
            return None
        found = db.execute("SELECT status FROM send_ledger WHERE id = ?", (row_id,)).fetchone()
        raise _refused(move, row_id, None if found is None else found[0])

    def move(self, move: _Move, row_id: int, now: datetime, error: str = "") -> None:
        """Apply ``move`` to one row; StoreError if its status does not allow it."""
        stamp = self._time(now)
        self._transaction(lambda db: self._apply(db, move, row_id, stamp, error))

    def mark_sent(self, row_id: int, now: datetime) -> None:
        """``sending -> sent`` and the row's posts delivered, in one transaction."""
        stamp = self._time(now)

        def work(db: sqlite3.Connection) -> None:
            moved = self._apply(db, _TO_SENT, row_id, stamp, "")
            assert moved is not None  # _TO_SENT returns the row it moved
            subscriber_id, post_ids, digest = moved
            posts = dict.fromkeys(str(p) for p in self._json(post_ids))
            # A post delivered before keeps the digest and time it first went out with.
            db.executemany(_ADD_DELIVERIES, [(subscriber_id, p, digest, stamp) for p in posts])

        self._transaction(work)


class Store:
    """The subscriber list, the send ledger and the digest runs of one site.

    Safe to share between threads; several processes may open the same
    database, and each sees the others' commits.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise StoreError(f"store.url {url!r}: not a database URL") from exc
        self.url = parsed.render_as_string(hide_password=True)
        try:
            if parsed.get_backend_name() == "sqlite":
                self._engine = _sqlite_engine(parsed)
            else:
                self._engine = sa.create_engine(parsed, pool_pre_ping=True)
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"store {self.url}: cannot open: {_detail(exc)}") from exc
        self._closed = False
        self._add_deliveries = _add_deliveries(self._engine.dialect.name)
        # The send path's own connection (SQLite files only), opened on first use.
        self._fast_wanted = parsed.get_backend_name() == "sqlite" and parsed.database not in (
            None,
            "",
            ":memory:",
        )
        self._fast: _SqliteSendPath | None = None
        self._fast_lock = threading.Lock()
        try:
            self._create_schema()
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def open(cls, config: Config) -> Store:
        """Open the store named by ``config.store.url``, creating its SQLite folder."""
        url = config.store.url
        try:
            parsed = make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise StoreError(f"store.url {url!r}: not a database URL") from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            folder = Path(parsed.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store.url: cannot create folder {folder}: {exc}") from exc
        return cls(url)

    def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""
        self._closed = True
        with self._fast_lock:
            fast, self._fast = self._fast, None
        if fast is not None:
            fast.close()
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """One transaction, committed on success; database errors become StoreError."""
        if self._closed:
            raise StoreError(f"store {self.url}: already closed")
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(publisher_write=True)
                with conn.begin():
                    yield conn
        except sa.exc.IntegrityError as exc:
            # Callers that expect a conflict turn this into a message naming the record.
            raise _Conflict(f"store {self.url}: {_detail(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store {self.url}: {_detail(exc)}") from exc

    def _send_path(self) -> _SqliteSendPath | None:
        """The fast connection for ledger status changes, or None to go through SQLAlchemy.

        An in-memory database is one connection shared by everything (tests), and
        other databases keep the portable path.
        """
        if not self._fast_wanted:
            return None
        if self._closed:
            raise StoreError(f"store {self.url}: already closed")
        with self._fast_lock:
            if self._fast is None:
                try:
                    self._fast = _SqliteSendPath(self._engine, self.url)
                except sa.exc.SQLAlchemyError as exc:
                    raise StoreError(f"store {self.url}: {_detail(exc)}") from exc
            return self._fast

    def _create_schema(self) -> None:
        with self._tx(write=True) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            _metadata.create_all(conn)
            found = conn.execute(
                sa.select(_meta.c.value).where(_meta.c.key == "schema_version")
            ).scalar()
            if found is None:
                conn.execute(_meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif int(found) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.url}: schema version {found} is newer than this publisher"
                    f" understands ({SCHEMA_VERSION}); upgrade publisher"
                )

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._tx() as conn:
            value = conn.execute(
                sa.select(_meta.c.value).where(_meta.c.key == "schema_version")
            ).scalar_one()
        return int(value)

    # --- subscribers -----------------------------------------------------------------------

    def add_subscriber(
        self,
        email: str,
        *,
        name: str = "",
        categories: Iterable[str] = (),
        status: str = "active",
        now: datetime,
    ) -> Subscriber:
        """Add an address; StoreError if it is invalid or already subscribed.

        An address added as active counts as confirmed now (an operator added it).
        """
        address = normalize_email(email)
        problem = name_problem(name)
        if problem is not None:
            raise StoreError(f"name {name.strip()!r}: {problem}")
        cleaned = clean_name(name)
        cats = clean_categories(categories)
        _check_choice(status, SUBSCRIBER_STATUSES, "status")
        try:
            with self._tx(write=True) as conn:
                key = _email_key(address)
                conn.execute(
                    _subscribers.insert().values(
                        email=address,
                        email_key=key,
                        name=cleaned,
                        categories=list(cats),
                        status=status,
                        created_at=now,
                        updated_at=now,
                        confirmed_at=now if status == "active" else None,
                    )
                )
                row = conn.execute(
                    sa.select(_subscribers).where(_subscribers.c.email_key == key)
                ).one()
        except _Conflict as exc:
            raise StoreError(f"{address}: already subscribed") from exc
        return _subscriber(row)

    def get_subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this address (any case), or None."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(_subscribers).where(_subscribers.c.email_key == _email_key(email))
            ).first()
        return None if row is None else _subscriber(row)

    def get_subscriber_by_id(self, id: int) -> Subscriber | None:
        """The subscriber with this id, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(_subscribers).where(_subscribers.c.id == id)).first()
        return None if row is None else _subscriber(row)

    def list_subscribers(self, status: str | None = None) -> list[Subscriber]:
        """Every subscriber (with this status, if given), oldest first."""
        query = sa.select(_subscribers).order_by(_subscribers.c.id)
        if status is not None:
            _check_choice(status, SUBSCRIBER_STATUSES, "status")
            query = query.where(_subscribers.c.status == status)
        with self._tx() as conn:
            return [_subscriber(row) for row in conn.execute(query)]

    def _update_subscriber(self, id: int, values: dict[str, Any], now: datetime) -> Subscriber:
        with self._tx(write=True) as conn:
            current = conn.execute(sa.select(_subscribers).where(_subscribers.c.id == id)).first()
            if current is None:
                raise StoreError(f"subscriber {id}: not found")
            if values.get("status") == "active" and current._mapping["confirmed_at"] is None:
                values = {**values, "confirmed_at": now}
            conn.execute(
                _subscribers.update()
                .where(_subscribers.c.id == id)
                .values(**values, updated_at=now)
            )
            row = conn.execute(sa.select(_subscribers).where(_subscribers.c.id == id)).one()
        return _subscriber(row)

    def set_status(self, id: int, status: str, *, now: datetime) -> Subscriber:
        """Change a subscriber's status; becoming active the first time confirms them."""
        _check_choice(status, SUBSCRIBER_STATUSES, "status")
        return self._update_subscriber(id, {"status": status}, now)

    def set_categories(self, id: int, categories: Iterable[str], *, now: datetime) -> Subscriber:
        """Replace the categories a subscriber follows (empty: all of them)."""
        return self._update_subscriber(id, {"categories": list(clean_categories(categories))}, now)

    def remove_subscriber(self, email: str) -> bool:
        """Delete a subscriber with their ledger and delivery history; False if absent."""
        with self._tx(write=True) as conn:
            found = conn.execute(
                sa.select(_subscribers.c.id).where(_subscribers.c.email_key == _email_key(email))
            ).scalar()
            if found is None:
                return False
            # Deleted explicitly too, for databases where foreign keys do not cascade.
            conn.execute(_ledger.delete().where(_ledger.c.subscriber_id == found))
            conn.execute(_deliveries.delete().where(_deliveries.c.subscriber_id == found))
            conn.execute(_subscribers.delete().where(_subscribers.c.id == found))
        return True

    # --- send ledger -----------------------------------------------------------------------

    def _plan_chunk(
        self,
        conn: Connection,
        digest: str,
        chunk: Sequence[tuple[int, Sequence[str], str]],
        now: datetime,
    ) -> dict[int, sa.Row[Any]]:
        ids = [sid for sid, _, _ in chunk]

        def existing() -> dict[int, sa.Row[Any]]:
            query = sa.select(_ledger).where(
                (_ledger.c.digest == digest) & _ledger.c.subscriber_id.in_(ids)
            )
            return {row.subscriber_id: row for row in conn.execute(query)}

        found = existing()
        missing = [item for item in chunk if item[0] not in found]
        if not missing:
            return found
        emails = dict(
            conn.execute(
                sa.select(_subscribers.c.id, _subscribers.c.email).where(
                    _subscribers.c.id.in_([sid for sid, _, _ in missing])
                )
            ).all()
        )
        values: dict[int, dict[str, Any]] = {}
        for sid, post_ids, message_id in missing:
            if sid not in emails:
                raise StoreError(f"subscriber {sid}: not found")
            values.setdefault(
                sid,
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
                },
            )
        conn.execute(_ledger.insert(), list(values.values()))
        return existing()

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
        for _attempt in range(2):
            try:
                with self._tx(write=True) as conn:
                    rows: dict[int, sa.Row[Any]] = {}
                    # Chunks keep every IN (...) list under the databases' parameter limits.
                    for start in range(0, len(items), 500):
                        chunk = items[start : start + 500]
                        rows.update(self._plan_chunk(conn, digest, chunk, now))
                    return [_ledger_row(rows[sid]) for sid, _, _ in items]
            except _Conflict:
                # Another process planned the same row between our read and insert
                # (possible on PostgreSQL; SQLite's IMMEDIATE lock prevents it): the
                # retry finds its row and returns it.
                continue
        raise StoreError(f"digest {digest}: cannot plan sends (conflicting writers)")

    def ledger(self, digest: str, status: str | None = None) -> list[LedgerRow]:
        """The planned messages of one digest (with this status, if given), in plan order."""
        query = sa.select(_ledger).where(_ledger.c.digest == digest).order_by(_ledger.c.id)
        if status is not None:
            _check_choice(status, LEDGER_STATUSES, "ledger status")
            query = query.where(_ledger.c.status == status)
        with self._tx() as conn:
            return [_ledger_row(row) for row in conn.execute(query)]

    def get_ledger_row(self, row_id: int) -> LedgerRow | None:
        """One ledger row by id, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(_ledger).where(_ledger.c.id == row_id)).first()
        return None if row is None else _ledger_row(row)

    def _transition(
        self,
        conn: Connection,
        move: _Move,
        row_id: int,
        now: datetime,
        error: str = "",
    ) -> sa.Row[Any] | None:
        """Move a row on, only from an allowed status: the check and the write are one step."""
        params: dict[str, Any] = {"row_id": row_id, "now": now}
        if move.takes_error:
            params["error"] = error
        result = conn.execute(move.statement, params)
        if move.returns_row:
            moved = result.first()
            if moved is not None:
                return moved
        elif result.rowcount == 1:
            return None
        raise _refused(move, row_id, conn.execute(_ROW_STATUS, {"row_id": row_id}).scalar())

    def mark_sending(self, row_id: int, *, now: datetime) -> None:
        """Claim a pending row before handing its message over; StoreError if not pending.

        The claim is what stops two processes from sending the same message.
        """
        self._change(_TO_SENDING, row_id, now)

    def _change(self, move: _Move, row_id: int, now: datetime, error: str = "") -> None:
        fast = self._send_path()
        if fast is not None:
            fast.move(move, row_id, now, error)
            return
        with self._tx(write=True) as conn:
            self._transition(conn, move, row_id, now, error)

    def _deliver(self, conn: Connection, row_id: int, now: datetime) -> None:
        row = self._transition(conn, _TO_SENT, row_id, now)
        assert row is not None  # _TO_SENT returns the row it moved
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
                self._add_deliveries,
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

    def mark_sent(self, row_id: int, *, now: datetime) -> None:
        """The server accepted the message: mark it sent and its posts delivered, atomically."""
        fast = self._send_path()
        if fast is not None:
            fast.mark_sent(row_id, now)
            return
        with self._tx(write=True) as conn:
            self._deliver(conn, row_id, now)

    def mark_failed(self, row_id: int, error: str, *, now: datetime) -> None:
        """A permanent failure for this recipient; the row is never retried."""
        self._change(_TO_FAILED, row_id, now, error)

    def mark_pending(self, row_id: int, error: str, *, now: datetime) -> None:
        """A temporary failure: the message was certainly not delivered; retry later."""
        self._change(_TO_PENDING, row_id, now, error)

    def resolve(self, row_id: int, *, sent: bool, now: datetime) -> None:
        """An operator's verdict on an uncertain ``sending`` row.

        ``sent=True`` records it exactly like ``mark_sent``; ``sent=False`` puts it
        back to pending so the next run sends it.
        """
        with self._tx(write=True) as conn:
            if sent:
                self._deliver(conn, row_id, now)
            else:
                self._transition(conn, _RESOLVED_UNSENT, row_id, now)

    def delivered_post_ids(self, subscriber_id: int) -> set[str]:
        """Every post already delivered to this subscriber by any digest."""
        with self._tx() as conn:
            return set(conn.execute(_DELIVERED, {"subscriber_id": subscriber_id}).scalars())

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
        with self._tx() as conn:
            # Chunks keep every IN (...) list under the databases' parameter limits.
            for start in range(0, len(ids), 500):
                query = sa.select(_deliveries.c.subscriber_id, _deliveries.c.post_id).where(
                    _deliveries.c.subscriber_id.in_(ids[start : start + 500])
                )
                for subscriber_id, post_id in conn.execute(query):
                    found[subscriber_id].add(post_id)
        return found

    # --- digest runs -----------------------------------------------------------------------

    def start_run(self, digest: str, *, due_at: datetime, now: datetime) -> DigestRun:
        """Record that the run for this period started; if it exists, return it unchanged."""
        return self._insert_run(
            digest, due_at=due_at, started_at=now, finished_at=None, status="running", note=""
        )

    def skip_run(self, digest: str, *, due_at: datetime, note: str, now: datetime) -> DigestRun:
        """Record in one transaction that this period is skipped; an existing run wins.

        One write, not start_run then finish_run: a process killed between the
        two would leave a "running" period that the next start would send late.
        """
        return self._insert_run(
            digest, due_at=due_at, started_at=now, finished_at=now, status="skipped", note=note
        )

    def reopen_run(self, digest: str, *, now: datetime) -> DigestRun:
        """A skipped period becomes running again, to be sent late (``--late-ok``).

        Only a skipped run is reopened; a run in any other status is returned
        as it is, so asking twice never plans a period twice.
        """
        with self._tx(write=True) as conn:
            conn.execute(
                _runs.update()
                .where((_runs.c.digest == digest) & (_runs.c.status == "skipped"))
                .values(status="running", started_at=now, finished_at=None, note="")
            )
            row = conn.execute(sa.select(_runs).where(_runs.c.digest == digest)).first()
        if row is None:
            raise StoreError(f"digest {digest}: no run was recorded")
        return _run(row)

    def retry_failed(
        self, digest: str, *, now: datetime, subscriber_ids: Iterable[int] | None = None
    ) -> int:
        """Put the failed rows of a period (of these subscribers, if given) back to
        pending, for a cause that has been fixed; returns how many."""
        where = (_ledger.c.digest == digest) & (_ledger.c.status == "failed")
        if subscriber_ids is not None:
            where = where & _ledger.c.subscriber_id.in_(list(subscriber_ids))
        with self._tx(write=True) as conn:
            result = conn.execute(
                _ledger.update()
                .where(where)
                .values(status="pending", error="retried by the operator", updated_at=now)
            )
        return int(result.rowcount)

    def _insert_run(self, digest: str, **values: Any) -> DigestRun:
        """Insert the period's run row unless one exists; either way return the row."""
        for _attempt in range(2):
            try:
                with self._tx(write=True) as conn:
                    found = conn.execute(sa.select(_runs).where(_runs.c.digest == digest)).first()
                    if found is not None:
                        return _run(found)
                    conn.execute(
                        _runs.insert().values(
                            digest=digest, sent=0, skipped=0, failed=0, uncertain=0, **values
                        )
                    )
                    return _run(
                        conn.execute(sa.select(_runs).where(_runs.c.digest == digest)).one()
                    )
            except _Conflict:
                continue  # another process recorded this period first: theirs stands
        raise StoreError(f"digest {digest}: cannot record the run (conflicting writers)")

    def finish_run(
        self,
        digest: str,
        *,
        status: str,
        sent: int,
        skipped: int,
        failed: int,
        uncertain: int,
        note: str = "",
        now: datetime,
    ) -> None:
        """Record how a run ended (or, with status "running", its progress so far)."""
        _check_choice(status, RUN_STATUSES, "run status")
        with self._tx(write=True) as conn:
            result = conn.execute(
                _runs.update()
                .where(_runs.c.digest == digest)
                .values(
                    status=status,
                    sent=sent,
                    skipped=skipped,
                    failed=failed,
                    uncertain=uncertain,
                    note=note,
                    finished_at=None if status == "running" else now,
                )
            )
            if result.rowcount != 1:
                raise StoreError(f"digest {digest}: no run was started")

    def get_run(self, digest: str) -> DigestRun | None:
        """The run of this period, or None if it never started."""
        with self._tx() as conn:
            row = conn.execute(sa.select(_runs).where(_runs.c.digest == digest)).first()
        return None if row is None else _run(row)

    def last_run(self) -> DigestRun | None:
        """The run with the latest due time, or None."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(_runs).order_by(_runs.c.due_at.desc(), _runs.c.started_at.desc())
            ).first()
        return None if row is None else _run(row)

    def list_runs(self) -> list[DigestRun]:
        """Every run, latest due first."""
        with self._tx() as conn:
            return [
                _run(row)
                for row in conn.execute(
                    sa.select(_runs).order_by(_runs.c.due_at.desc(), _runs.c.started_at.desc())
                )
            ]

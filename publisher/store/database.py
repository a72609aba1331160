"""The connection to one database: its engine, its transactions, its errors.

Opens the SQLAlchemy engine for a URL (for SQLite: WAL, a busy timeout,
foreign keys, ``synchronous=FULL``, and ``BEGIN IMMEDIATE`` for writers),
creates the schema, and runs each operation in one committed transaction
(:meth:`Database._tx`) that turns every database error into a one-line
:class:`~publisher.errors.StoreError` (:class:`Conflict` for a refused
constraint). Knows nothing of subscribers, ledgers or runs: the operation
modules build on :class:`Database`, never the other way round.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

from publisher.errors import StoreError
from publisher.store.schema import create_schema, schema_version

if TYPE_CHECKING:
    from publisher.config import Config

__all__ = ["BUSY_TIMEOUT_MS", "Conflict", "Database", "detail"]

BUSY_TIMEOUT_MS = 30_000


class Conflict(StoreError):
    """A constraint refused a write (a duplicate, usually): the caller names the record."""


def detail(exc: BaseException) -> str:
    """A database error as one line: PostgreSQL's (libpq's) messages span several."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())


def _parse(url: str) -> sa.URL:
    try:
        return make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise StoreError(f"store.url {url!r}: not a database URL") from exc


def _is_sqlite_file(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")


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
    memory = not _is_sqlite_file(url)
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


class Database:
    """One open database with the store's schema; the base of :class:`~publisher.store.Store`.

    Safe to share between threads; several processes may open the same
    database, and each sees the others' commits.
    """

    def __init__(self, url: str) -> None:
        parsed = _parse(url)
        self.url = parsed.render_as_string(hide_password=True)
        # A SQLite file (not an in-memory database): the raw-sqlite3 send path can serve it.
        self._sqlite_file = _is_sqlite_file(parsed)
        try:
            if parsed.get_backend_name() == "sqlite":
                self._engine = _sqlite_engine(parsed)
            else:
                self._engine = sa.create_engine(parsed, pool_pre_ping=True)
        except (sa.exc.SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"store {self.url}: cannot open: {detail(exc)}") from exc
        self._closed = False
        try:
            with self._tx(write=True) as conn:
                create_schema(conn, self.url)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def open(cls, config: Config) -> Self:
        """Open the store named by ``config.store.url``, creating its SQLite folder."""
        url = config.store.url
        parsed = _parse(url)
        if _is_sqlite_file(parsed):
            folder = Path(str(parsed.database)).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"store.url: cannot create folder {folder}: {exc}") from exc
        return cls(url)

    def close(self) -> None:
        """Release every connection; the store cannot be used afterwards."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.url}: already closed")

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """One transaction, committed on success; database errors become StoreError."""
        self._check_open()
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(publisher_write=True)
                with conn.begin():
                    yield conn
        except sa.exc.IntegrityError as exc:
            # Callers that expect a conflict turn this into a message naming the record.
            raise Conflict(f"store {self.url}: {detail(exc)}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store {self.url}: {detail(exc)}") from exc

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._tx() as conn:
            return schema_version(conn)

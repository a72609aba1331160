"""The databases a store is tested on: a SQLite file, and a real PostgreSQL server when given.

``store_url`` runs a test once per backend. The PostgreSQL case needs a server:
set ``PUBLISHER_TEST_POSTGRES_URL`` (``bash .ci/postgres`` starts Debian's
cluster on 127.0.0.1 and prints one); without it those cases are skipped.

``ledger_backend`` does the same for the send ledger, whose status changes
take one of two paths behind one interface (publisher/store/send_path.py):
it runs a test on a SQLite file twice, once through the store's raw-sqlite3
path (``sqlite-raw``) and once with that turned off, through SQLAlchemy
(``sqlite-sqlalchemy``), then on PostgreSQL.

Each test gets an empty database: its own schema, dropped and made again, which
the URL selects through libpq's ``options`` (``search_path``). A schema costs
milliseconds where a fresh database costs a copy of the template, and the name
holds this process's id, so two test runs against one server keep apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.store import Store

__all__ = [
    "LEDGER_BACKENDS",
    "POSTGRES_URL_ENV",
    "Backend",
    "PostgresSchema",
    "backend",
    "ledger_backend",
    "postgres_schema",
    "postgres_url",
    "store_url",
]

POSTGRES_URL_ENV = "PUBLISHER_TEST_POSTGRES_URL"


class PostgresSchema:
    """One schema of the test server, emptied for each test that asks."""

    def __init__(self, base_url: str) -> None:
        self.name = f"publisher_test_{os.getpid()}"
        self._engine = sa.create_engine(base_url)
        url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={self.name}"})
        # The URL a Store (or the publisher command, from config.yaml) opens.
        self.url = url.render_as_string(hide_password=False)

    def fresh(self) -> str:
        """Drop and recreate the schema; return the URL that opens it."""
        with self._engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {self.name}")
        return self.url

    def close(self) -> None:
        with self._engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
        self._engine.dispose()


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[PostgresSchema]:
    """The test server's schema for this run; skips the test when no server is given."""
    base = os.environ.get(POSTGRES_URL_ENV, "")
    if not base:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set (bash .ci/postgres starts a server)")
    schema = PostgresSchema(base)
    try:
        yield schema
    finally:
        schema.close()


@pytest.fixture
def postgres_url(postgres_schema: PostgresSchema) -> str:
    """An empty PostgreSQL database (skipped without a server)."""
    return postgres_schema.fresh()


def _sqlite_file_url(tmp_path: Path) -> str:
    folder = tmp_path / "state"
    folder.mkdir(exist_ok=True)
    return f"sqlite:///{folder / 'publisher.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a new SQLite file, then PostgreSQL if given."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return _sqlite_file_url(tmp_path)


@dataclass(frozen=True)
class Backend:
    """An empty database for one test, and which send path a Store on it takes."""

    url: str
    raw_send: bool  # Store(raw_send=...): False keeps the ledger changes on SQLAlchemy

    def open(self) -> Store:
        return Store(self.url, raw_send=self.raw_send)


# The parameters of ``ledger_backend``: the cases whose database another connection can
# open, each database through its driver's own send path and through SQLAlchemy's.
LEDGER_BACKENDS = ("sqlite-raw", "sqlite-sqlalchemy", "postgresql", "postgresql-sqlalchemy")
#: The send path each case takes (Store.send_path_name).
SEND_PATHS = {
    "sqlite-raw": "sqlite3",
    "sqlite-sqlalchemy": "sqlalchemy",
    "postgresql": "psycopg",
    "postgresql-sqlalchemy": "sqlalchemy",
    "sqlite-memory": "sqlalchemy",
}


def backend(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Backend:
    """The database a parameter names: one of LEDGER_BACKENDS, or ``sqlite-memory``.

    An in-memory database (``sqlite://``) exists only inside the one Store that
    opened it, so it suits the tests that reach the database through that store alone.
    """
    if name in ("postgresql", "postgresql-sqlalchemy"):
        url = str(request.getfixturevalue("postgres_url"))
        return Backend(url, raw_send=name == "postgresql")
    if name == "sqlite-memory":
        return Backend("sqlite://", raw_send=True)
    if name in ("sqlite-raw", "sqlite-sqlalchemy"):
        return Backend(_sqlite_file_url(tmp_path), raw_send=name == "sqlite-raw")
    raise ValueError(f"no such backend: {name!r}")


@pytest.fixture(params=LEDGER_BACKENDS)
def ledger_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """An empty database on each backend and send path: a SQLite file through the raw
    sqlite3 path, the same through SQLAlchemy, then PostgreSQL (if given) likewise."""
    return backend(request, tmp_path, str(request.param))

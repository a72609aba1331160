"""The store's own fixtures: ``ledger_backend`` (tests/databases.py) runs each send path."""

from tests.databases import ledger_backend  # noqa: F401

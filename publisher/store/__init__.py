"""Subscribers, the send ledger and digest runs, kept in one SQL database.

SQLite is the default (``store.url`` in config.yaml); the SQL is portable, so a
PostgreSQL URL works unchanged. Every write is its own committed transaction,
so a process killed at any moment loses nothing it reported as done. Times
are stored in UTC and returned as aware datetimes; naive datetimes are
refused, because guessing their zone would shift every schedule.

The modules, each importing only modules listed before it:

* :mod:`.values`: the dataclasses and statuses handed out (pure);
* :mod:`.addresses`: email addresses and category names, checked (pure);
* :mod:`.csv_import`: subscriber lists as CSV, read (pure);
* :mod:`.schema`: the tables, the UTC time type, creating the schema;
* :mod:`.send_path`: the ledger's status changes and the ``SendPath`` interface;
* :mod:`.database`: engines, SQLite pragmas, transactions, error translation;
* :mod:`.sqlalchemy_send` and :mod:`.sqlite_send`: the two send paths;
* :mod:`.subscribers`, :mod:`.ledger`, :mod:`.runs`, :mod:`.suppressions`,
  :mod:`.claims` (several senders sharing a period): the operations, one mixin
  each, composed here into :class:`Store`.

Nothing here sends mail or reads a post: the store only keeps the records.
"""

from __future__ import annotations

from publisher.store.addresses import clean_categories, email_problem, normalize_email
from publisher.store.claims import ClaimOps, SenderRecord
from publisher.store.ledger import LedgerOps
from publisher.store.runs import RunOps
from publisher.store.subscribers import SubscriberOps
from publisher.store.suppressions import SuppressionOps
from publisher.store.values import (
    LEDGER_STATUSES,
    RUN_STATUSES,
    SCHEMA_VERSION,
    SUBSCRIBER_STATUSES,
    SUPPRESSED_STATUSES,
    DigestRun,
    LedgerRow,
    Subscriber,
    Suppression,
)

__all__ = [
    "LEDGER_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "SUBSCRIBER_STATUSES",
    "SUPPRESSED_STATUSES",
    "DigestRun",
    "LedgerRow",
    "SenderRecord",
    "Store",
    "Subscriber",
    "Suppression",
    "clean_categories",
    "email_problem",
    "normalize_email",
]


class Store(SubscriberOps, LedgerOps, RunOps, SuppressionOps, ClaimOps):
    """The subscriber list, the send ledger and the digest runs of one site.

    Safe to share between threads; several processes may open the same
    database, and each sees the others' commits.
    """

    def __init__(self, url: str, *, raw_send: bool = True) -> None:
        """Open the database at ``url``, creating its tables if they are missing.

        ``raw_send=False`` sends the ledger status changes of a SQLite file or a
        PostgreSQL database through SQLAlchemy like every other database's, instead
        of the faster path on the driver itself (:attr:`send_path_name`): for tests
        that compare them.
        """
        super().__init__(url, raw_send=raw_send)

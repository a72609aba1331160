"""What the store hands out: subscribers, ledger rows and digest runs, and their statuses.

Plain frozen dataclasses and constants, the vocabulary every other module of
the store (and its callers) speaks. Pure: no I/O, no SQL, imports nothing of
publisher but :mod:`publisher.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from publisher.errors import StoreError

__all__ = [
    "LEDGER_STATUSES",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "SUBSCRIBER_STATUSES",
    "SUPPRESSED_STATUSES",
    "DigestRun",
    "LedgerRow",
    "Subscriber",
    "Suppression",
    "check_choice",
]

# 2: suppressions and soft bounces (tables of their own: an older database gets them)
# 3: ledger rows carry a claim (worker, lease_until) and the provider's message id;
#    send workers and the shared send budget (an older database's ledger is altered)
# 4: the ledger's (digest, status) index becomes (digest, status, id): claims in id order
SCHEMA_VERSION = 4
#: A hard bounce or a complaint suppresses an address: it is sent nothing more.
SUPPRESSED_STATUSES = ("bounced", "complained")
SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", *SUPPRESSED_STATUSES)
LEDGER_STATUSES = ("pending", "sending", "sent", "failed")
RUN_STATUSES = ("running", "done", "failed", "skipped")


@dataclass(frozen=True)
class Subscriber:
    """One address that may receive digests."""

    id: int
    email: str
    name: str
    categories: tuple[str, ...]  # empty: every category
    status: str  # "pending" | "active" | "unsubscribed" | "bounced" | "complained"
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None


@dataclass(frozen=True)
class Suppression:
    """An address nothing is sent to any more, and why."""

    email: str
    kind: str  # "bounced" | "complained"
    reason: str
    at: datetime


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
    provider_id: str = ""  # the id an HTTP API provider gave the accepted message


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


def check_choice(value: str, choices: Sequence[str], what: str) -> None:
    """StoreError("<what> <value>: must be one of ...") unless ``value`` is in ``choices``."""
    if value not in choices:
        raise StoreError(f"{what} {value!r}: must be one of " + ", ".join(choices))

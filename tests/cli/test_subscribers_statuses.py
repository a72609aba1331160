"""The subscribers command spells out the store's statuses (to start without SQLAlchemy)."""

from __future__ import annotations

from publisher.cli import subscribers
from publisher.store import SUBSCRIBER_STATUSES, SUPPRESSED_STATUSES


def test_the_commands_statuses_are_the_stores() -> None:
    assert subscribers._STATUSES == SUBSCRIBER_STATUSES
    assert subscribers._SUPPRESSED == SUPPRESSED_STATUSES

"""Suppressed addresses: a hard bounce or a complaint stops all mail to an address at once,
soft bounces do after a limit, and nothing (removal, import, the form) brings one back
without the operator's --force. Run on SQLite and on PostgreSQL when given."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.store import SCHEMA_VERSION, Store
from tests.conftest import Site

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as opened:
        yield opened


def test_a_hard_bounce_suppresses_at_once_with_its_reason_and_time(store: Store) -> None:
    ann = store.add_subscriber("Ann@Example.net", now=T0)
    found = store.suppress("ann@example.net", "bounced", "550 5.1.1 no such user", now=T0)
    assert (found.kind, found.reason, found.at) == ("bounced", "550 5.1.1 no such user", T0)
    assert store.get_subscriber("ann@example.net").status == "bounced"  # type: ignore[union-attr]
    assert [s.id for s in store.list_subscribers("active")] == []
    # A later complaint outweighs the bounce; a later bounce does not undo a complaint.
    store.suppress("ann@example.net", "complained", "ARF abuse report", now=T0 + WINDOW)
    store.suppress("ann@example.net", "bounced", "550 again", now=T0 + 2 * WINDOW)
    found2 = store.suppression("ANN@example.net")
    assert found2 is not None and (found2.kind, found2.reason) == ("complained", "ARF abuse report")
    assert store.get_subscriber_by_id(ann.id).status == "complained"  # type: ignore[union-attr]


def test_three_soft_bounces_in_the_window_suppress_and_a_delivery_resets_the_count(
    store: Store,
) -> None:
    bob = store.add_subscriber("bob@example.net", now=T0)
    soft = {"now": T0, "limit": 3, "window": WINDOW}
    assert store.soft_bounce("bob@example.net", "452 mailbox full", **soft) is None
    assert store.soft_bounce("bob@example.net", "452 mailbox full", **soft) is None
    # A message delivered after them: the count starts again.
    row = store.plan_send("2026-W45", bob.id, ["p1"], "<m1@x>", now=T0)
    store.mark_sending(row.id, now=T0 + timedelta(days=1))
    store.mark_sent(row.id, now=T0 + timedelta(days=1))
    later = {**soft, "now": T0 + timedelta(days=2)}
    assert store.soft_bounce("bob@example.net", "452 mailbox full", **later) is None
    assert store.soft_bounce("bob@example.net", "452 mailbox full", **later) is None
    # Soft bounces older than the window do not count either.
    old = {**soft, "now": T0 + timedelta(days=2) + WINDOW + timedelta(days=1)}
    assert store.soft_bounce("bob@example.net", "452", **old) is None
    suppressed = None
    for _ in range(2):
        suppressed = store.soft_bounce("bob@example.net", "452 mailbox full", **old)
    assert suppressed is not None and suppressed.kind == "bounced"
    assert suppressed.reason.startswith("3 soft bounces within 30 days: 452 mailbox full")
    assert store.get_subscriber("bob@example.net").status == "bounced"  # type: ignore[union-attr]


def test_a_suppression_outlives_removal_and_only_force_adds_the_address_again(
    store: Store,
) -> None:
    store.add_subscriber("cho@example.net", now=T0)
    store.suppress("cho@example.net", "bounced", "550 gone", now=T0)
    assert store.remove_subscriber("cho@example.net")
    with pytest.raises(StoreError, match=r"cho@example.net: suppressed \(bounced 2026-11-01: 550"):
        store.add_subscriber("cho@example.net", now=T0)
    again = store.add_subscriber("cho@example.net", now=T0, force=True)
    assert again.status == "active" and store.suppression("cho@example.net") is None


def test_an_older_database_gets_the_new_tables_and_its_version(store_url: str) -> None:
    with Store(store_url) as store:
        store.add_subscriber("old@example.net", now=T0)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # as a database made before suppressions existed
        conn.exec_driver_sql("DROP TABLE suppressions")
        conn.exec_driver_sql("DROP TABLE soft_bounces")
        conn.exec_driver_sql("DROP TABLE bounce_events")
        conn.exec_driver_sql("UPDATE publisher_meta SET value = '1' WHERE key = 'schema_version'")
    engine.dispose()
    with Store(store_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.suppress("old@example.net", "bounced", "550", now=T0)
        assert store.get_subscriber("old@example.net").status == "bounced"  # type: ignore[union-attr]


def test_the_cli_shows_keeps_and_revives_suppressed_addresses(site: Site) -> None:
    for email in ("ann@example.net", "bob@example.net"):
        assert site.run("subscribers", "add", email).returncode == 0
    with Store.open(site.config()) as store:
        store.suppress("bob@example.net", "complained", "abuse report via ARF", now=T0)
    listed = site.run("subscribers", "list")
    assert "bob@example.net" in listed.stdout and "complained" in listed.stdout
    assert (
        "bob@example.net: complained 2026-11-01 18:00: abuse report via ARF"
    )  # in Tokyo in listed.stdout
    assert listed.stdout.strip().endswith("2 subscribers: 1 active, 1 complained")
    exported = site.run("subscribers", "export").stdout
    assert "bob@example.net,,,complained" in exported

    # Removed and imported again: still suppressed, the row reported, exit 1.
    assert site.run("subscribers", "remove", "bob@example.net").returncode == 0
    (site.root / "list.csv").write_text("email,name,categories\nbob@example.net,Bob,\n", "utf-8")
    imported = site.run("subscribers", "import", "list.csv")
    assert imported.returncode == 1
    assert "list.csv:2: bob@example.net: suppressed (complained" in imported.stderr
    assert "--force" in imported.stderr
    assert site.run("subscribers", "import", "list.csv", "--force").returncode == 0
    with Store.open(site.config()) as store:
        bob = store.get_subscriber("bob@example.net")
        assert bob is not None and bob.status == "active"
        store.suppress("bob@example.net", "bounced", "550", now=T0)

    # An exported suppression read back by import suppresses the address again.
    (site.root / "back.csv").write_text(
        "email,name,categories,status\ndan@example.net,,,bounced\n", "utf-8"
    )
    assert site.run("subscribers", "import", "back.csv").returncode == 0
    refused = site.run("subscribers", "add", "dan@example.net")
    assert refused.returncode == 1 and "dan@example.net: suppressed (bounced" in refused.stderr
    revived = site.run("subscribers", "add", "bob@example.net", "--force")
    assert revived.returncode == 0 and revived.stdout.startswith("revived bob@example.net (active")
    with Store.open(site.config()) as store:
        assert store.suppression("bob@example.net") is None
        assert store.suppression("dan@example.net") is not None

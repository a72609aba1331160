"""What only a real PostgreSQL server shows: its errors, its locking, the command against it.

Every test here needs PUBLISHER_TEST_POSTGRES_URL (``bash .ci/postgres`` prints
one) and is skipped without it; the portable behaviour is tested on both
backends in tests/store/test_store.py.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.store import Store
from tests.conftest import Site

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)
SECRET = {"PUBLISHER_SECRET": "postgres test secret"}


def unreachable(url: str) -> str:
    """The same database URL on a port where nothing listens (port 1 needs root to open)."""
    return sa.make_url(url).set(port=1).render_as_string(hide_password=False)


def test_an_unreachable_server_is_one_line(postgres_url: str) -> None:
    # libpq's message has a second line ("Is the server running on that host...").
    with pytest.raises(StoreError) as caught:
        Store(unreachable(postgres_url))
    message = str(caught.value)
    assert "\n" not in message and "\t" not in message
    assert "port 1 failed: Connection refused Is the server running" in message
    assert ":***@" in message  # the password is not shown


def test_the_command_says_one_line_when_the_server_is_down(site: Site, postgres_url: str) -> None:
    site.write_config(store={"url": unreachable(postgres_url)})
    result = site.run("subscribers", "list")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("publisher: store postgresql+psycopg://publisher:***@")


def test_mark_sent_waits_for_a_concurrent_delivery_of_the_same_post(postgres_url: str) -> None:
    """Another transaction records post p1 as delivered to Ann (the operator resolving last
    week's uncertain message as sent, say) while this week's message, which carries p1 too,
    is marked sent. The second must wait for the first and keep its record, not fail: a
    failed ``mark_sent`` leaves a delivered message looking uncertain."""
    with Store(postgres_url) as store:
        ann = store.add_subscriber("ann@example.com", now=T0)
        row = store.plan_send("2026-W49", ann.id, ["p0", "p1", "p2"], "<m@x>", now=T0)
        store.mark_sending(row.id, now=T0)
        engine = sa.create_engine(postgres_url, poolclass=sa.NullPool)
        errors: list[BaseException] = []

        def mark_sent() -> None:
            try:
                store.mark_sent(row.id, now=T0 + timedelta(minutes=1))
            except BaseException as exc:  # reported by the test below
                errors.append(exc)

        try:
            with engine.connect() as other, engine.connect() as watcher:
                watcher.execution_options(isolation_level="AUTOCOMMIT")
                holder = other.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                other.execute(
                    sa.text(
                        "INSERT INTO deliveries (subscriber_id, post_id, digest, delivered_at)"
                        " VALUES (:id, 'p1', '2026-W48', '2026-11-23 08:00:00')"
                    ),
                    {"id": ann.id},
                )
                worker = threading.Thread(target=mark_sent)
                worker.start()
                # Wait (for a state, not a time) until mark_sent is blocked on our row.
                deadline = time.monotonic() + 30
                while worker.is_alive() and time.monotonic() < deadline:
                    blocked = watcher.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE CAST(:holder AS integer) = ANY(pg_blocking_pids(pid))"
                        ),
                        {"holder": holder},
                    ).scalar()
                    if blocked:
                        break
                    time.sleep(0.005)
                else:
                    pytest.fail("mark_sent was never blocked by the other transaction")
                other.commit()
                worker.join(timeout=30)
        finally:
            engine.dispose()
        assert errors == []
        done = store.get_ledger_row(row.id)
        assert done is not None and done.status == "sent"
        assert store.delivered_post_ids(ann.id) == {"p0", "p1", "p2"}


def test_subscribers_add_and_digest_send_on_postgresql(seed_site: Site, postgres_url: str) -> None:
    site = seed_site
    site.write_config(
        store={"url": postgres_url},
        digest={"from": "Test Site <news@example.com>", "backend": "outbox"},
    )
    for address in ("ann@example.net", "Bob@Example.NET"):
        added = site.run("--now", NOW, "subscribers", "add", address)
        assert added.returncode == 0, added.stderr
    sent = site.run("--now", NOW, "digest", "send", env=SECRET)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == "digest 2025-W37: sent 2, skipped 0, failed 0, uncertain 0\n"
    files = sorted((site.root / "outbox").glob("*.eml"))
    received = {
        message_from_bytes(path.read_bytes(), policy=policy.default)["To"] for path in files
    }
    assert received == {"ann@example.net", "Bob@example.net"}

    again = site.run("--now", NOW, "digest", "send", env=SECRET)
    assert again.stdout == "digest 2025-W37: sent 0, skipped 2, failed 0, uncertain 0\n"
    assert len(list((site.root / "outbox").glob("*.eml"))) == 2
    # The state is in PostgreSQL, not in a SQLite file beside the site.
    assert not list(site.root.rglob("*.db"))
    with Store(postgres_url) as store:
        rows = store.ledger("2025-W37")
        assert sorted(row.email for row in rows) == ["Bob@example.net", "ann@example.net"]
        assert all(row.status == "sent" and row.sent_at is not None for row in rows)
        run = store.get_run("2025-W37")
        assert run is not None and (run.status, run.sent) == ("done", 2)

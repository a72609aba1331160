"""Claims on ledger rows, leases, sender records and the shared send budget, on each database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from publisher.store import SCHEMA_VERSION, Store

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def _planned(store: Store, count: int, digest: str = "2026-W50") -> list[int]:
    ids = [store.add_subscriber(f"s{i}@example.net", now=T0).id for i in range(count)]
    rows = store.plan_sends(digest, [(sid, ["p1"], f"<m{sid}@x>") for sid in ids], now=T0)
    return [row.id for row in rows]


def test_claims_share_the_rows_out_in_plan_order_and_none_twice(store_url: str) -> None:
    with Store(store_url) as store:
        row_ids = _planned(store, 25)
        first = store.claim_rows("2026-W50", "a", 10, now=T0, lease=LEASE)
        second = store.claim_rows("2026-W50", "b", 10, now=T0, lease=LEASE)
        third = store.claim_rows("2026-W50", "a", 10, now=T0, lease=LEASE)
        assert [r.id for r in first + second + third] == row_ids
        assert store.claim_rows("2026-W50", "c", 10, now=T0, lease=LEASE) == []
        assert store.next_lease_end("2026-W50", now=T0) == T0 + LEASE


def test_rows_of_a_sender_that_stopped_renewing_come_free_when_its_lease_ends(
    store_url: str,
) -> None:
    with Store(store_url) as store:
        row_ids = _planned(store, 6)
        held = store.claim_rows("2026-W50", "killed", 3, now=T0, lease=LEASE)
        alive = store.claim_rows("2026-W50", "alive", 3, now=T0, lease=LEASE)
        store.mark_sending(held[0].id, now=T0)  # it had begun one: that row is uncertain
        later = T0 + LEASE / 2
        assert store.renew_claims("2026-W50", "alive", now=later, lease=LEASE) == 3
        after = T0 + LEASE + timedelta(seconds=1)
        taken = store.claim_rows("2026-W50", "restarted", 10, now=after, lease=LEASE)
        # Only the killed sender's unbegun rows: the live one renewed, the begun one is sending.
        assert [r.id for r in taken] == row_ids[1:3]
        assert [r.id for r in alive] == row_ids[3:]
        counts = store.ledger_counts("2026-W50")
        assert (counts["pending"], counts["sending"]) == (5, 1)


def test_released_rows_are_free_at_once_and_sent_rows_never_come_back(store_url: str) -> None:
    with Store(store_url) as store:
        _planned(store, 4)
        rows = store.claim_rows("2026-W50", "a", 4, now=T0, lease=LEASE)
        store.mark_sending(rows[0].id, now=T0)
        store.mark_sent(rows[0].id, now=T0)
        assert store.release_claims("2026-W50", "a") == 3
        again = store.claim_rows("2026-W50", "b", 10, now=T0, lease=LEASE)
        assert [r.id for r in again] == [r.id for r in rows[1:]]
        assert store.next_lease_end("2026-W50", now=T0 + 2 * LEASE) is None


def test_concurrent_claims_from_many_threads_take_each_row_once(store_url: str) -> None:
    with Store(store_url) as store:
        row_ids = _planned(store, 300)
        taken: list[int] = []
        lock = threading.Lock()

        def sender(name: str) -> None:
            while rows := store.claim_rows("2026-W50", name, 7, now=T0, lease=LEASE):
                with lock:
                    taken.extend(r.id for r in rows)

        threads = [threading.Thread(target=sender, args=(f"w{i}",)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(taken) == row_ids


def test_sender_records_count_what_each_sender_did(store_url: str) -> None:
    with Store(store_url) as store:
        _planned(store, 5)
        store.register_sender("host:1:a", "2026-W50", host="host", pid=1, now=T0)
        store.claim_rows("2026-W50", "host:1:a", 4, now=T0, lease=LEASE)
        store.count_sender("host:1:a", now=T0 + LEASE, sent=3, failed=1)
        store.finish_sender("host:1:a", now=T0 + LEASE)
        (record,) = store.senders("2026-W50")
        assert (record.claimed, record.sent, record.failed, record.uncertain) == (4, 3, 1, 0)
        assert record.last_seen == record.finished_at == T0 + LEASE
        assert (record.host, record.pid) == ("host", 1)


def test_the_send_budget_is_one_schedule_for_every_sender(store_url: str) -> None:
    every = timedelta(milliseconds=100)
    with Store(store_url) as store, Store(store_url) as other:
        assert store.take_send_slots("2026-W50", 5, every=every, now=T0) == T0
        assert other.take_send_slots("2026-W50", 5, every=every, now=T0) == T0 + 5 * every
        # A schedule that fell behind starts again now: idle time is not saved up.
        later = T0 + timedelta(seconds=10)
        assert store.take_send_slots("2026-W50", 1, every=every, now=later) == later


def test_an_older_ledger_gets_the_claim_columns_and_index(store_url: str) -> None:
    with Store(store_url) as store:
        _planned(store, 2)
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:  # as version 2 made it
        conn.exec_driver_sql("DROP INDEX ix_send_ledger_claim")
        conn.exec_driver_sql(
            "CREATE INDEX ix_send_ledger_digest_status ON send_ledger (digest, status)"
        )
        for column in ("worker", "lease_until", "provider_id"):
            conn.exec_driver_sql(f"ALTER TABLE send_ledger DROP COLUMN {column}")
        conn.exec_driver_sql("DROP TABLE send_workers")
        conn.exec_driver_sql("DROP TABLE send_budget")
        conn.exec_driver_sql("UPDATE publisher_meta SET value = '2' WHERE key = 'schema_version'")
    engine.dispose()
    with Store(store_url) as store:
        assert store.schema_version == SCHEMA_VERSION == 4
        with store._engine.connect() as conn:
            indexes = {
                i["name"]: i["column_names"] for i in sa.inspect(conn).get_indexes("send_ledger")
            }
        assert indexes["ix_send_ledger_claim"] == ["digest", "status", "id"]
        assert "ix_send_ledger_digest_status" not in indexes
        assert len(store.claim_rows("2026-W50", "a", 5, now=T0, lease=LEASE)) == 2
        store.register_sender("a", "2026-W50", host="h", pid=2, now=T0)
        assert [s.worker for s in store.senders("2026-W50")] == ["a"]


def test_the_planning_lock_admits_one_planner_at_a_time(store_url: str) -> None:
    digest = "2026-W50"
    with Store(store_url) as store:
        inside: list[str] = []
        order: list[str] = []
        gate = threading.Event()

        def planner(name: str) -> None:
            with store.planning_lock(digest):
                inside.append(name)
                order.append(f"{name} in {len(inside)}")
                gate.wait(0.2)
                inside.remove(name)

        threads = [threading.Thread(target=planner, args=(n,)) for n in "abc"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if store.shared_senders:  # PostgreSQL: one at a time
            assert sorted(order) == ["a in 1", "b in 1", "c in 1"]
        else:  # SQLite: the state folder's file lock admits one sender; nothing here
            assert len(order) == 3


def test_a_row_being_sent_is_in_flight_while_its_sender_holds_the_lease(store_url: str) -> None:
    with Store(store_url) as store:
        _planned(store, 3)
        rows = store.claim_rows("2026-W50", "a", 3, now=T0, lease=LEASE)
        store.mark_sending(rows[0].id, now=T0)
        assert store.in_flight("2026-W50", now=T0) == {rows[0].id}
        # The heartbeat keeps it in flight; a sender that stops renewing loses it.
        later = T0 + LEASE
        assert store.renew_claims("2026-W50", "a", now=later, lease=LEASE) == 3
        assert store.in_flight("2026-W50", now=later + LEASE / 2) == {rows[0].id}
        assert store.in_flight("2026-W50", now=later + 2 * LEASE) == set()
        # A sender that finishes with a row left sending leaves it uncertain at once.
        store.release_claims("2026-W50", "a")
        assert store.in_flight("2026-W50", now=later) == set()
        assert store.next_lease_end("2026-W50", now=later) is None

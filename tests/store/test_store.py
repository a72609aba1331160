"""The store on a real SQLite file and a real PostgreSQL server: subscribers, ledger, runs.

Tests taking ``store`` or ``store_url`` run once per backend (tests/databases.py);
the PostgreSQL cases need PUBLISHER_TEST_POSTGRES_URL and are skipped without it.
The ledger's tests (``ledger_store``, ``ledger_backend``) run on SQLite twice, once
through each send path (the raw sqlite3 one and SQLAlchemy), behind one interface.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.store import (
    SCHEMA_VERSION,
    LedgerRow,
    Store,
    Subscriber,
    email_problem,
    normalize_email,
)
from tests.conftest import REPO, Site
from tests.databases import LEDGER_BACKENDS, SEND_PATHS, Backend, backend

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A SQLite file, for the tests of what only SQLite has."""
    db = tmp_path / "state" / "publisher.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return db


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url) as opened:
        yield opened


@pytest.fixture(params=[*LEDGER_BACKENDS, "sqlite-memory"])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A SQLite file through its raw sqlite3 send path, the same file through SQLAlchemy,
    PostgreSQL through psycopg's own path and through SQLAlchemy, or an in-memory SQLite
    database (SQLAlchemy): the ledger must behave the same on all five."""
    with backend(request, tmp_path, str(request.param)).open() as opened:
        yield opened


@pytest.fixture
def backend_store(ledger_backend: Backend) -> Iterator[Store]:
    """A store on ``ledger_backend``, for the tests that reach its database another way too."""
    with ledger_backend.open() as opened:
        yield opened


@contextmanager
def raw_database(url: str) -> Iterator[sa.Connection]:
    """A connection of its own to the store's database, behind the store's back."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


# --- email addresses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ann@example.com", "ann@example.com"),
        ("  Ann.Lee@Example.COM ", "Ann.Lee@example.com"),
        ("a+tag@mail.example.co.jp", "a+tag@mail.example.co.jp"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("taro@例え.jp", "taro@xn--r8jz45g.jp"),
    ],
)
def test_valid_addresses_are_normalized(given: str, stored: str) -> None:
    assert email_problem(given) is None
    assert normalize_email(given) == stored


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("", "is empty"),
        ("ann", "must contain exactly one '@'"),
        ("ann@@example.com", "must contain exactly one '@'"),
        ("@example.com", "has nothing before the '@'"),
        ("ann@", "has no domain after the '@'"),
        ("ann@localhost", "domain 'localhost' has no dot"),
        ("ann lee@example.com", "must not contain spaces"),
        ("ann@example.com\r\nBcc: all@example.com", "must not contain line breaks"),
        ("ann..lee@example.com", "has an invalid part before the '@': 'ann..lee'"),
        ("ann@-example.com", "has an invalid domain: '-example.com'"),
        ("ann@example.c0m", "domain 'example.c0m' does not end in a top-level domain"),
        ("a" * 65 + "@example.com", "has more than 64 characters before the '@'"),
        ("ann@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com", None),
    ],
)
def test_invalid_addresses_say_what_is_wrong(given: str, problem: str | None) -> None:
    found = email_problem(given)
    assert found is not None
    if problem is not None:
        assert found == problem
    with pytest.raises(StoreError, match="not a valid email address"):
        normalize_email(given)


# --- subscribers --------------------------------------------------------------------------


def test_add_and_read_back_a_subscriber(store: Store) -> None:
    added = store.add_subscriber(
        "Ann@Example.com", name=" Ann Lee ", categories=["tech", " life", "tech", ""], now=T0
    )
    assert added.email == "Ann@example.com"
    assert added.name == "Ann Lee"
    assert added.categories == ("tech", "life")
    assert added.status == "active"
    assert added.created_at == added.updated_at == added.confirmed_at == T0
    assert added.created_at.tzinfo is not None
    assert store.get_subscriber("ann@EXAMPLE.com") == added
    assert store.get_subscriber_by_id(added.id) == added
    assert store.get_subscriber("bob@example.com") is None
    assert store.get_subscriber_by_id(added.id + 1) is None


def test_times_are_stored_in_utc_and_naive_times_are_refused(store: Store) -> None:
    tokyo = timezone(timedelta(hours=9))
    added = store.add_subscriber("ann@example.com", now=datetime(2026, 12, 1, 9, 0, tzinfo=tokyo))
    assert added.created_at == datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    assert added.created_at.utcoffset() == timedelta(0)
    with pytest.raises(StoreError, match="naive datetime"):
        store.add_subscriber("bob@example.com", now=datetime(2026, 12, 1, 9, 0))
    assert store.get_subscriber("bob@example.com") is None


def test_no_categories_means_all(store: Store) -> None:
    assert store.add_subscriber("ann@example.com", now=T0).categories == ()


def test_the_same_address_cannot_subscribe_twice_in_any_case(store: Store) -> None:
    store.add_subscriber("ann@example.com", now=T0)
    with pytest.raises(StoreError, match=r"^ANN@example.com: already subscribed$"):
        store.add_subscriber("ANN@EXAMPLE.COM", now=T1)
    assert len(store.list_subscribers()) == 1


def test_bad_input_is_refused_before_anything_is_written(store: Store) -> None:
    with pytest.raises(StoreError, match="not a valid email address"):
        store.add_subscriber("not-an-address", now=T0)
    with pytest.raises(StoreError, match="name 'Ann\\\\nBcc: x': must be one line"):
        store.add_subscriber("ann@example.com", name="Ann\nBcc: x", now=T0)
    with pytest.raises(StoreError, match="status 'gone': must be one of pending, active"):
        store.add_subscriber("ann@example.com", status="gone", now=T0)
    assert store.list_subscribers() == []


def test_pending_subscriber_is_confirmed_when_activated(store: Store) -> None:
    pending = store.add_subscriber("ann@example.com", status="pending", now=T0)
    assert pending.confirmed_at is None
    active = store.set_status(pending.id, "active", now=T1)
    assert (active.status, active.confirmed_at, active.updated_at) == ("active", T1, T1)
    later = T1 + timedelta(days=1)
    gone = store.set_status(pending.id, "unsubscribed", now=later)
    again = store.set_status(pending.id, "active", now=later + timedelta(days=1))
    assert gone.status == "unsubscribed"
    assert again.confirmed_at == T1  # the first confirmation is kept
    assert [s.email for s in store.list_subscribers("active")] == ["ann@example.com"]
    assert store.list_subscribers("pending") == []


def test_set_categories_and_errors_name_the_subscriber(store: Store) -> None:
    ann = store.add_subscriber("ann@example.com", categories=["tech"], now=T0)
    changed = store.set_categories(ann.id, ["life", "travel"], now=T1)
    assert changed.categories == ("life", "travel")
    assert store.set_categories(ann.id, [], now=T1).categories == ()
    with pytest.raises(StoreError, match=r"^subscriber 999: not found$"):
        store.set_status(999, "active", now=T1)
    with pytest.raises(StoreError, match="must be one of"):
        store.set_status(ann.id, "deleted", now=T1)


def test_list_is_in_the_order_added(store: Store) -> None:
    for name in ("c", "a", "b"):
        store.add_subscriber(f"{name}@example.com", now=T0)
    assert [s.email for s in store.list_subscribers()] == [
        "c@example.com",
        "a@example.com",
        "b@example.com",
    ]


def test_remove_deletes_the_subscriber_and_their_history(store: Store) -> None:
    ann = store.add_subscriber("ann@example.com", now=T0)
    bob = store.add_subscriber("bob@example.com", now=T0)
    for who in (ann, bob):
        row = store.plan_send("2026-W49", who.id, ["p1"], f"<{who.id}@x>", now=T0)
        store.mark_sending(row.id, now=T0)
        store.mark_sent(row.id, now=T0)
    assert store.remove_subscriber("ANN@example.com") is True
    assert store.remove_subscriber("ann@example.com") is False
    assert store.get_subscriber("ann@example.com") is None
    assert [r.email for r in store.ledger("2026-W49")] == ["bob@example.com"]
    assert store.delivered_post_ids(ann.id) == set()
    assert store.delivered_post_ids(bob.id) == {"p1"}


# --- the send ledger ----------------------------------------------------------------------


def test_planning_is_idempotent(ledger_store: Store) -> None:
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    first = store.plan_send("2026-W49", ann.id, ["p1", "p2"], "<m1@example.com>", now=T0)
    assert (first.status, first.post_ids, first.attempts, first.email) == (
        "pending",
        ("p1", "p2"),
        0,
        "ann@example.com",
    )
    # A resumed run plans again, perhaps with other posts: the first plan stands.
    again = store.plan_send("2026-W49", ann.id, ["p3"], "<m2@example.com>", now=T1)
    assert again == first
    assert store.ledger("2026-W49") == [first]
    # Another period is another row.
    other = store.plan_send("2026-W50", ann.id, ["p3"], "<m3@example.com>", now=T1)
    assert other.id != first.id


def test_the_database_itself_refuses_a_second_row_per_digest_and_subscriber(
    backend_store: Store, ledger_backend: Backend
) -> None:
    store, store_url = backend_store, ledger_backend.url
    ann = store.add_subscriber("ann@example.com", now=T0)
    store.plan_send("2026-W49", ann.id, ["p1"], "<m1@x>", now=T0)
    with raw_database(store_url) as raw, pytest.raises(sa.exc.IntegrityError, match=r"(?i)unique"):
        raw.execute(
            sa.text(
                "INSERT INTO send_ledger (digest, subscriber_id, email, status, post_ids,"
                " message_id, attempts, error, created_at, updated_at)"
                " VALUES ('2026-W49', :id, 'ann@example.com', 'pending', '[]', '<m2@x>', 0, '',"
                " '2026-11-30 08:00:00', '2026-11-30 08:00:00')"
            ),
            {"id": ann.id},
        )


def test_plan_sends_plans_many_in_one_go_and_keeps_existing_rows(ledger_store: Store) -> None:
    store = ledger_store
    subs = [store.add_subscriber(f"s{i}@example.com", now=T0) for i in range(5)]
    early = store.plan_send("2026-W49", subs[2].id, ["old"], "<early@x>", now=T0)
    rows = store.plan_sends("2026-W49", [(s.id, ["p1"], f"<{s.id}@x>") for s in subs], now=T1)
    assert [r.subscriber_id for r in rows] == [s.id for s in subs]
    assert rows[2] == early
    assert len(store.ledger("2026-W49", "pending")) == 5


def test_planning_for_an_unknown_subscriber_fails(ledger_store: Store) -> None:
    store = ledger_store
    with pytest.raises(StoreError, match=r"^subscriber 42: not found$"):
        store.plan_send("2026-W49", 42, ["p1"], "<m@x>", now=T0)
    assert store.ledger("2026-W49") == []


def test_a_message_moves_pending_sending_sent(ledger_store: Store) -> None:
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    row = store.plan_send("2026-W49", ann.id, ["p1", "p2"], "<m1@x>", now=T0)
    store.mark_sending(row.id, now=T1)
    sending = store.ledger("2026-W49", "sending")
    assert [(r.id, r.attempts, r.updated_at) for r in sending] == [(row.id, 1, T1)]
    assert store.delivered_post_ids(ann.id) == set()  # not yet accepted by the server
    sent_at = T1 + timedelta(seconds=1)
    store.mark_sent(row.id, now=sent_at)
    done = store.get_ledger_row(row.id)
    assert done is not None
    assert (done.status, done.sent_at, done.error) == ("sent", sent_at, "")
    assert store.delivered_post_ids(ann.id) == {"p1", "p2"}


def test_a_row_can_be_claimed_only_once(ledger_store: Store) -> None:
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    row = store.plan_send("2026-W49", ann.id, ["p1"], "<m1@x>", now=T0)
    store.mark_sending(row.id, now=T1)
    with pytest.raises(StoreError, match=f"ledger row {row.id}: cannot start sending"):
        store.mark_sending(row.id, now=T1)
    store.mark_sent(row.id, now=T1)
    with pytest.raises(StoreError, match="cannot start sending a message that is sent"):
        store.mark_sending(row.id, now=T1)
    with pytest.raises(StoreError, match="cannot mark as sent a message that is sent"):
        store.mark_sent(row.id, now=T1)
    with pytest.raises(StoreError, match=r"^ledger row 999: not found$"):
        store.mark_sending(999, now=T1)


def test_mark_sent_needs_a_claim_first(ledger_store: Store) -> None:
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    row = store.plan_send("2026-W49", ann.id, ["p1"], "<m1@x>", now=T0)
    with pytest.raises(StoreError, match="only when sending"):
        store.mark_sent(row.id, now=T1)
    assert store.delivered_post_ids(ann.id) == set()


REFUSE_DELIVERIES = {
    "sqlite": [
        "CREATE TRIGGER refuse_delivery BEFORE INSERT ON deliveries"
        " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_delivery() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'disk says no'; END $$",
        "CREATE TRIGGER refuse_delivery BEFORE INSERT ON deliveries"
        " FOR EACH ROW EXECUTE FUNCTION refuse_delivery()",
    ],
}


def test_the_providers_message_id_is_kept_with_the_sent_row(ledger_store: Store) -> None:
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    bob = store.add_subscriber("bob@example.com", now=T0)
    a = store.plan_send("2026-W49", ann.id, ["p1"], "<m1@x>", now=T0)
    b = store.plan_send("2026-W49", bob.id, ["p1"], "<m2@x>", now=T0)
    for row in (a, b):
        store.mark_sending(row.id, now=T1)
    store.mark_sent(a.id, now=T1, provider_id="b7bc2f4a-e38e-4336-af7d-e6c392c2f817")
    store.mark_sent(b.id, now=T1)  # SMTP: no id of the provider's
    got = {row.email: row.provider_id for row in store.ledger("2026-W49", "sent")}
    assert got == {
        "ann@example.com": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
        "bob@example.com": "",
    }


def test_mark_sent_is_atomic_with_the_delivered_posts(
    backend_store: Store, ledger_backend: Backend
) -> None:
    store, store_url = backend_store, ledger_backend.url
    ann = store.add_subscriber("ann@example.com", now=T0)
    row = store.plan_send("2026-W49", ann.id, ["p1", "p2"], "<m1@x>", now=T0)
    store.mark_sending(row.id, now=T0)
    # Make the second half of mark_sent fail inside the database.
    with raw_database(store_url) as raw:
        for statement in REFUSE_DELIVERIES[raw.dialect.name]:
            raw.exec_driver_sql(statement)
        raw.commit()
    with pytest.raises(StoreError, match="disk says no"):
        store.mark_sent(row.id, now=T1)
    still = store.get_ledger_row(row.id)
    assert still is not None and still.status == "sending"  # not half sent
    assert store.delivered_post_ids(ann.id) == set()


def test_delivered_posts_accumulate_across_digests(ledger_store: Store) -> None:
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    for digest, posts in (("2026-W49", ["p1", "p2"]), ("2026-W50", ["p2", "p3"])):
        row = store.plan_send(digest, ann.id, posts, f"<{digest}@x>", now=T0)
        store.mark_sending(row.id, now=T0)
        store.mark_sent(row.id, now=T0)
    assert store.delivered_post_ids(ann.id) == {"p1", "p2", "p3"}


def test_delivered_posts_of_many_subscribers_at_once(ledger_store: Store) -> None:
    store = ledger_store
    subs = [store.add_subscriber(f"s{i}@example.com", now=T0) for i in range(3)]
    for sub, posts in zip(subs[:2], (["p1", "p2"], ["p2"]), strict=True):
        row = store.plan_send("2026-W49", sub.id, posts, f"<{sub.id}@x>", now=T0)
        store.mark_sending(row.id, now=T0)
        store.mark_sent(row.id, now=T0)
    assert store.delivered_post_ids_by_subscriber(s.id for s in subs) == {
        subs[0].id: {"p1", "p2"},
        subs[1].id: {"p2"},
        subs[2].id: set(),
    }


def test_a_post_id_longer_than_255_characters_is_delivered(ledger_store: Store) -> None:
    # A post's id holds its file name percent-encoded: nine characters for each
    # Japanese one, so an ordinary Japanese title passes 255 characters.
    name = "2026-11-20-" + "クラウドAI投資競争の最前線" * 3
    long_id = "tag:example.com,2026-11-20:" + quote(name)
    assert len(long_id) > 300
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    row = store.plan_send("2026-W49", ann.id, [long_id, "p1"], "<m1@x>", now=T0)
    store.mark_sending(row.id, now=T1)
    store.mark_sent(row.id, now=T1)
    assert store.delivered_post_ids(ann.id) == {long_id, "p1"}
    assert store.ledger("2026-W49", "sent")[0].post_ids == (long_id, "p1")


def plan_ann_and_bob(store: Store) -> tuple[Subscriber, Subscriber, LedgerRow, LedgerRow]:
    """Ann and Bob, subscribed at T0, each with one pending 2026-W49 message of p1 planned at T0.

    Returns (ann, bob, ann's row, bob's row).
    """
    ann = store.add_subscriber("ann@example.com", now=T0)
    bob = store.add_subscriber("bob@example.com", now=T0)
    a = store.plan_send("2026-W49", ann.id, ["p1"], "<a@x>", now=T0)
    b = store.plan_send("2026-W49", bob.id, ["p1"], "<b@x>", now=T0)
    return ann, bob, a, b


def test_failures_temporary_and_permanent(ledger_store: Store) -> None:
    store = ledger_store
    _ann, bob, a, b = plan_ann_and_bob(store)
    store.mark_sending(a.id, now=T0)
    store.mark_pending(a.id, "451 try again later", now=T1)
    store.mark_sending(a.id, now=T1)
    store.mark_sending(b.id, now=T0)
    store.mark_failed(b.id, "550 no such user", now=T1)
    again, failed = store.ledger("2026-W49")
    assert (again.status, again.attempts, again.error) == ("sending", 2, "451 try again later")
    assert (failed.status, failed.error) == ("failed", "550 no such user")
    with pytest.raises(StoreError, match="cannot return to pending a message that is failed"):
        store.mark_pending(b.id, "retry?", now=T1)
    assert store.delivered_post_ids(bob.id) == set()


def test_an_operator_resolves_uncertain_rows(ledger_store: Store) -> None:
    store = ledger_store
    ann, bob, a, b = plan_ann_and_bob(store)
    store.mark_sending(a.id, now=T0)
    store.mark_sending(b.id, now=T0)
    store.resolve(a.id, sent=True, now=T1)
    store.resolve(b.id, sent=False, now=T1)
    by_email = {r.email: r for r in store.ledger("2026-W49")}
    assert by_email["ann@example.com"].status == "sent"
    assert store.delivered_post_ids(ann.id) == {"p1"}
    assert by_email["bob@example.com"].status == "pending"
    assert store.delivered_post_ids(bob.id) == set()
    with pytest.raises(StoreError, match="cannot resolve a message that is pending"):
        store.resolve(b.id, sent=False, now=T1)


def test_each_case_takes_the_send_path_it_names(
    request: pytest.FixtureRequest, ledger_store: Store
) -> None:
    # Without this, a case named sqlite-raw could quietly test SQLAlchemy twice.
    case = request.node.callspec.params["ledger_store"]
    assert ledger_store.send_path_name == SEND_PATHS[case]


def test_a_naive_time_is_refused_on_every_send_path(ledger_store: Store) -> None:
    store = ledger_store
    ann = store.add_subscriber("ann@example.com", now=T0)
    row = store.plan_send("2026-W49", ann.id, ["p1"], "<m1@x>", now=T0)
    naive = datetime(2026, 12, 1, 9, 0)
    with pytest.raises(StoreError, match="naive datetime"):
        store.mark_sending(row.id, now=naive)
    store.mark_sending(row.id, now=T1)
    with pytest.raises(StoreError, match="naive datetime"):
        store.mark_sent(row.id, now=naive)
    with pytest.raises(StoreError, match="naive datetime"):
        store.mark_failed(row.id, "550 no such user", now=naive)
    still = store.get_ledger_row(row.id)
    assert still is not None
    assert (still.status, still.attempts, still.updated_at) == ("sending", 1, T1)
    assert store.delivered_post_ids(ann.id) == set()


# --- digest runs --------------------------------------------------------------------------


def test_digest_runs(store: Store) -> None:
    assert store.last_run() is None
    first = store.start_run("2026-W49", due_at=T0, now=T1)
    assert (first.status, first.started_at, first.finished_at) == ("running", T1, None)
    assert store.start_run("2026-W49", due_at=T0, now=T1 + timedelta(hours=1)) == first
    store.finish_run(
        "2026-W49", status="done", sent=3, skipped=1, failed=1, uncertain=0, note="ok", now=T1
    )
    done = store.get_run("2026-W49")
    assert done is not None
    assert (done.status, done.sent, done.skipped, done.failed, done.note, done.finished_at) == (
        "done",
        3,
        1,
        1,
        "ok",
        T1,
    )
    week = timedelta(days=7)
    store.start_run("2026-W50", due_at=T0 + week, now=T1 + week)
    last = store.last_run()
    assert last is not None and last.digest == "2026-W50"
    assert [r.digest for r in store.list_runs()] == ["2026-W50", "2026-W49"]
    assert store.get_run("2026-W51") is None
    with pytest.raises(StoreError, match=r"^digest 2026-W51: no run was started$"):
        store.finish_run(
            "2026-W51", status="done", sent=0, skipped=0, failed=0, uncertain=0, now=T1
        )
    with pytest.raises(StoreError, match="run status 'ok': must be one of"):
        store.finish_run("2026-W50", status="ok", sent=0, skipped=0, failed=0, uncertain=0, now=T1)


# --- the database file --------------------------------------------------------------------


def test_two_stores_on_one_database_see_each_others_commits(
    ledger_backend: Backend, backend_store: Store
) -> None:
    store = backend_store
    with ledger_backend.open() as other:
        ann = store.add_subscriber("ann@example.com", now=T0)
        assert other.get_subscriber("ann@example.com") == ann
        row = other.plan_send("2026-W49", ann.id, ["p1"], "<m@x>", now=T0)
        assert store.plan_send("2026-W49", ann.id, ["p9"], "<n@x>", now=T1) == row
        store.mark_sending(row.id, now=T1)
        with pytest.raises(StoreError, match="cannot start sending"):
            other.mark_sending(row.id, now=T1)
        store.mark_sent(row.id, now=T1)
        assert other.delivered_post_ids(ann.id) == {"p1"}


CLAIMER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from publisher.errors import StoreError
    from publisher.store import Store

    now = datetime(2026, 11, 30, tzinfo=UTC)
    claimed = []
    with Store(sys.argv[1], raw_send=sys.argv[2] == "raw") as store:
        sys.stdout.write("ready\\n"); sys.stdout.flush()
        sys.stdin.readline()  # start together
        for row in store.ledger("2026-W49"):
            try:
                store.mark_sending(row.id, now=now)
            except StoreError:
                continue
            store.mark_sent(row.id, now=now)
            claimed.append(row.id)
    print(" ".join(map(str, claimed)))
    """
)


def test_two_processes_never_claim_the_same_row(
    ledger_backend: Backend, backend_store: Store
) -> None:
    store, store_url = backend_store, ledger_backend.url
    path = "raw" if ledger_backend.raw_send else "sqlalchemy"
    subs = [store.add_subscriber(f"s{i}@example.com", now=T0) for i in range(60)]
    store.plan_sends("2026-W49", [(s.id, ["p1"], f"<{s.id}@x>") for s in subs], now=T0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, store_url, path],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        outputs = [proc.communicate("go\n", timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    claimed = [set(map(int, out.split())) for out in outputs]
    assert all(proc.returncode == 0 for proc in procs)
    assert not claimed[0] & claimed[1]
    assert claimed[0] | claimed[1] == {r.id for r in store.ledger("2026-W49")}
    assert len(store.ledger("2026-W49", "sent")) == 60


def test_two_threads_of_one_store_never_claim_the_same_row(backend_store: Store) -> None:
    store = backend_store
    subs = [store.add_subscriber(f"s{i}@example.com", now=T0) for i in range(60)]
    rows = store.plan_sends("2026-W49", [(s.id, ["p1"], f"<{s.id}@x>") for s in subs], now=T0)
    claimed: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claim(mine: list[int]) -> None:
        start.wait()
        for row in rows:  # both threads go for every row, in the same order
            try:
                store.mark_sending(row.id, now=T1)
            except StoreError:
                continue
            store.mark_sent(row.id, now=T1)
            mine.append(row.id)

    threads = [threading.Thread(target=claim, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == [r.id for r in rows]
    assert [r.attempts for r in store.ledger("2026-W49", "sent")] == [1] * 60


def test_processes_opening_an_empty_database_at_once_all_get_the_schema(
    store_url: str,
) -> None:
    # ``publisher run`` and ``publisher serve`` started together on a new database:
    # each creates the tables it does not see yet.
    opened: list[Store] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        try:
            opened.append(Store(store_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert [store.schema_version for store in opened] == [SCHEMA_VERSION] * 4
        opened[0].add_subscriber("ann@example.com", now=T0)
        assert [len(store.list_subscribers()) for store in opened] == [1] * 4
    finally:
        for store in opened:
            store.close()


def test_open_from_config_creates_the_folder_relative_to_the_site(site: Site) -> None:
    site.write_config(store={"url": "sqlite:///var/db/subscribers.db"})
    with Store.open(site.config()) as opened:
        opened.add_subscriber("ann@example.com", now=T0)
        assert opened.schema_version == SCHEMA_VERSION
    assert (site.root / "var" / "db" / "subscribers.db").is_file()


def test_a_newer_schema_is_refused_with_a_clear_message(store_url: str, store: Store) -> None:
    store.close()
    with raw_database(store_url) as raw:
        raw.exec_driver_sql("UPDATE publisher_meta SET value = '99' WHERE key = 'schema_version'")
        raw.commit()
    with pytest.raises(StoreError, match="schema version 99 is newer than this publisher"):
        Store(store_url)


def test_errors_of_the_database_become_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        Store("no such thing")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="unable to open database file"):
        Store(f"sqlite:///{blocker}/sub/publisher.db")


def test_a_closed_store_says_so(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="already closed"):
        store.list_subscribers()


def test_wal_mode_and_foreign_keys(db: Path) -> None:
    store = Store(f"sqlite:///{db}")
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    with store, store._tx() as conn:  # the pragmas are per connection: check the store's own
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000


def test_a_removed_subscribers_id_is_never_given_to_someone_new(store: Store) -> None:
    # Unsubscribe links carry the id: an old link must not act on a new subscriber.
    first = store.add_subscriber("ann@example.com", now=T0)
    assert store.remove_subscriber("ann@example.com")
    second = store.add_subscriber("bob@example.com", now=T0)
    assert second.id != first.id

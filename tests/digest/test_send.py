"""The send loop against a real store (SQLite, and PostgreSQL when given) and the in-memory
backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from publisher.build.pipeline import load_site
from publisher.config import Config
from publisher.digest.period import period_at
from publisher.digest.plan import plan_selections
from publisher.digest.report import SendReport
from publisher.digest.send import send_digest
from publisher.errors import (
    ConfigError,
    PermanentSendError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail import MemoryBackend
from publisher.store import Store, Subscriber
from tests.conftest import Site

TOKYO = ZoneInfo("Asia/Tokyo")
W48 = datetime(2026, 11, 23, 8, 0, 5, tzinfo=TOKYO)  # just after Monday's digest fell due
W49 = W48 + timedelta(days=7)
JOINED = datetime(2026, 11, 10, tzinfo=TOKYO)
SECRET = b"send test secret"


@pytest.fixture
def news(site: Site, store_url: str) -> Site:
    """The site, its store on each backend (tests/databases.py)."""
    site.write_config(digest={"from": "Test Site <news@example.com>"}, store={"url": store_url})
    site.post("2026-11-20-python-news.md", "title: Python news\ncategories: [Python]")
    site.post("2026-11-21-ai.md", "title: AIの話\ncategories: [AI技術]", "本文です。\n")
    site.post("2026-11-01-old.md", "title: Old news\ncategories: [Python]")
    site.post(
        "2026-11-25-future.md",
        "title: Future post\ncategories: [Python]\ndate: 2026-11-25 10:00:00 +0900",
    )
    return site


@pytest.fixture
def store(news: Site) -> Iterator[Store]:
    with Store.open(news.config()) as opened:
        for email, categories in (
            ("ann@example.net", ()),
            ("bob@example.net", ("Python",)),
            ("cho@example.net", ("Go",)),
        ):
            opened.add_subscriber(email, name=email[:3].title(), categories=categories, now=JOINED)
        yield opened


def send(
    config: Config, store: Store, now: datetime, backend: MemoryBackend | None = None, **kw: bool
) -> tuple[SendReport, MemoryBackend]:
    backend = backend or MemoryBackend()
    with backend:
        report = send_digest(config, store, backend, now=now, secret=SECRET, **kw)  # type: ignore[arg-type]
    return report, backend


def titles(message: EmailMessage) -> list[str]:
    text = message.get_body(("plain",))
    assert text is not None
    content = text.get_content().replace("\r\n", "\n")
    known = ["Python news", "AIの話", "Old news", "Future post", "Backdated", "Python news v2"]
    return sorted(t for t in known if f"\n{t}\n" in content)


def test_each_subscriber_gets_their_categories_once(news: Site, store: Store) -> None:
    config = news.config()
    report, backend = send(config, store, W48)
    assert (report.period, report.sent, report.skipped, report.failed, report.uncertain) == (
        "2026-W48",
        2,
        1,
        0,
        0,
    )
    assert report.ok
    [ann] = backend.to("ann@example.net")
    [bob] = backend.to("bob@example.net")
    assert backend.to("cho@example.net") == []
    assert titles(ann) == ["AIの話", "Python news"]  # the old post is outside the first window
    assert titles(bob) == ["Python news"]
    # The ledger says who got what, under the Message-ID that was sent.
    rows = {row.email: row for row in store.ledger("2026-W48")}
    assert set(rows) == {"ann@example.net", "bob@example.net"}
    assert all(row.status == "sent" for row in rows.values())
    assert rows["ann@example.net"].message_id == ann["Message-ID"]
    run = store.get_run("2026-W48")
    assert run is not None and (run.status, run.sent) == ("done", 2)


def test_asking_twice_for_the_same_period_sends_nothing_new(news: Site, store: Store) -> None:
    config = news.config()
    send(config, store, W48)
    again, backend = send(config, store, W48)
    assert (again.sent, again.skipped, again.failed) == (0, 3, 0)
    assert backend.messages == []
    # Later the same week the future post is out, but this week's digest has gone.
    later, backend = send(config, store, W48 + timedelta(days=3))
    assert later.period == "2026-W48" and later.sent == 0 and backend.messages == []


def test_later_digests_carry_only_what_is_new(news: Site, store: Store) -> None:
    config = news.config()
    send(config, store, W48)
    # After the first digest: a post is edited (same id), one is backdated into last
    # week, and the future post comes out.
    news.post("2026-11-20-python-news.md", "title: Python news v2\ncategories: [Python]")
    news.post(
        "2026-11-19-backdated.md",
        "title: Backdated\ncategories: [Python]\ndate: 2026-11-19 09:00:00 +0900",
    )
    report, backend = send(config, store, W49)
    assert report.period == "2026-W49" and report.sent == 2
    assert titles(backend.to("ann@example.net")[0]) == ["Backdated", "Future post"]
    assert titles(backend.to("bob@example.net")[0]) == ["Backdated", "Future post"]
    assert store.delivered_post_ids(store.get_subscriber("bob@example.net").id) == {  # type: ignore[union-attr]
        f"tag:example.com,{day}:{name}"
        for day, name in (
            ("2026-11-20", "2026-11-20-python-news"),
            ("2026-11-19", "2026-11-19-backdated"),
            ("2026-11-25", "2026-11-25-future"),
        )
    }


def test_a_new_subscriber_gets_only_the_first_window(news: Site, store: Store) -> None:
    config = news.config()
    send(config, store, W48)
    news.post(
        "2026-11-19-backdated.md",
        "title: Backdated\ncategories: [Python]\ndate: 2026-11-19 09:00:00 +0900",
    )
    store.add_subscriber("dan@example.net", now=W49 - timedelta(days=1))
    report, backend = send(config, store, W49)
    # W49's first window starts at W48's due time: neither last week's posts nor
    # the backdated one, only what came out since.
    assert titles(backend.to("dan@example.net")[0]) == ["Future post"]
    assert report.sent == 3


def test_web_copy_is_written_with_every_post_and_no_personal_links(
    news: Site, store: Store
) -> None:
    send(news.config(), store, W48)
    page = (news.output / "digests" / "2026-W48.html").read_text("utf-8")
    assert "Python news" in page and "AIの話" in page
    assert "/unsubscribe/" not in page and "ann@example.net" not in page
    assert not list((news.output / "digests").glob(".*"))  # no temporary files left


def test_permanent_failure_fails_that_row_and_the_run_goes_on(news: Site, store: Store) -> None:
    config = news.config()
    backend = MemoryBackend()
    backend.fail_for("ann@example.net", PermanentSendError("550 5.1.1 No such user"))
    report, _ = send(config, store, W48, backend)
    assert (report.sent, report.failed, report.uncertain) == (1, 1, 0)
    assert not report.ok
    assert report.problems == [
        "ann@example.net: failed: 550 5.1.1 No such user (address suppressed)"
    ]
    [row] = store.ledger("2026-W48", "failed")
    assert (row.email, row.error) == ("ann@example.net", "550 5.1.1 No such user")
    again, backend = send(config, store, W48)
    assert again.sent == 0 and backend.messages == []  # not retried
    # A 5xx is a hard bounce: the address is suppressed, and next week gets nothing.
    suppressed = store.suppression("ann@example.net")
    assert suppressed is not None and suppressed.kind == "bounced"
    assert suppressed.reason == "550 5.1.1 No such user"
    ann = store.get_subscriber("ann@example.net")
    assert ann is not None and ann.status == "bounced"
    _later, backend = send(config, store, W49)
    assert [str(m["To"]) for m in backend.messages] == ["Bob <bob@example.net>"]


def test_a_retried_row_never_resends_posts_a_later_digest_delivered(
    news: Site, store: Store
) -> None:
    config = news.config()
    backend = MemoryBackend()
    backend.fail_for("bob@example.net", PermanentSendError("550 mailbox full"))
    first, _ = send(config, store, W48, backend)
    assert (first.sent, first.failed) == (1, 1)
    run = store.get_run("2026-W48")
    assert run is not None and run.status == "done"
    # The 550 suppressed Bob; the mailbox is fixed and the operator revives him
    # (what `subscribers add --force` does).
    bob = store.get_subscriber("bob@example.net")
    assert bob is not None and bob.status == "bounced"
    assert store.unsuppress("bob@example.net")
    store.set_status(bob.id, "active", now=W48)
    # The next week's digest reaches Bob with the post his W48 message would have had.
    _later, backend = send(config, store, W49)
    assert titles(backend.to("bob@example.net")[0]) == ["Future post", "Python news"]
    # The mailbox is fixed and the operator retries W48: nothing is left to send Bob.
    assert store.retry_failed("2026-W48", now=W49) == 1
    run = store.get_run("2026-W48")
    assert run is not None and run.status == "failed"  # owed, until the send below
    retried, backend = send(config, store, W48)
    assert (retried.sent, backend.messages) == (0, [])
    [row] = store.ledger("2026-W48", "failed")
    assert row.error == "not sent: its posts are unpublished, or a later digest delivered them"
    run = store.get_run("2026-W48")
    assert run is not None and run.status == "done"


def test_temporary_failure_is_retried_by_the_next_run(news: Site, store: Store) -> None:
    config = news.config()
    backend = MemoryBackend()
    backend.fail_for("ann@example.net", TemporarySendError("451 try later"), times=1)
    report, _ = send(config, store, W48, backend)
    assert (report.sent, report.failed) == (1, 1)
    [row] = store.ledger("2026-W48", "pending")
    assert row.email == "ann@example.net" and "451" in row.error
    run = store.get_run("2026-W48")
    assert run is not None and run.status == "failed"  # something is still owed
    retry, backend = send(config, store, W48)
    assert (retry.sent, retry.failed) == (1, 0)
    assert [m["To"] for m in backend.messages] == ["Ann <ann@example.net>"]
    run = store.get_run("2026-W48")
    assert run is not None and (run.status, run.sent) == ("done", 2)


def test_uncertain_is_never_resent_until_resolved(news: Site, store: Store) -> None:
    config = news.config()
    backend = MemoryBackend()
    backend.fail_for("ann@example.net", UncertainSendError("lost after DATA"), times=1)
    report, _ = send(config, store, W48, backend)
    assert (report.sent, report.uncertain) == (1, 1)
    assert len(backend.to("ann@example.net")) == 1  # it did arrive
    again, second = send(config, store, W48)
    assert again.uncertain == 1 and second.messages == []
    assert "publisher digest resolve ann@example.net --period 2026-W48" in again.problems[0]
    [row] = store.ledger("2026-W48", "sending")
    store.resolve(row.id, sent=False, now=W48)
    third, backend = send(config, store, W48)
    assert (third.sent, third.uncertain) == (1, 0)
    assert [m["Message-ID"] for m in backend.messages] == [row.message_id]  # the same message


def test_too_many_failures_stop_the_run(news: Site, store: Store) -> None:
    news.write_config(smtp={"error_threshold": 1})
    config = news.config()
    for i in range(4):
        store.add_subscriber(f"x{i}@example.net", now=JOINED)
    backend = MemoryBackend()
    for email in ("ann", "bob", "x0", "x1", "x2", "x3"):
        backend.fail_for(f"{email}@example.net", TemporarySendError("421 too busy"))
    report, _ = send(config, store, W48, backend)
    assert report.failed == 2 and report.sent == 0
    assert "smtp.error_threshold (1)" in report.stopped
    assert backend.attempts == 2
    assert len(store.ledger("2026-W48", "pending")) == 6
    run = store.get_run("2026-W48")
    assert run is not None and run.status == "failed" and "error_threshold" in run.note


def test_uncertain_rows_of_an_earlier_run_do_not_count_toward_the_threshold(
    news: Site, store: Store
) -> None:
    news.write_config(smtp={"error_threshold": 2})
    config = news.config()
    for i in range(4):
        store.add_subscriber(f"x{i}@example.net", now=JOINED)
    backend = MemoryBackend()
    for email in ("ann", "bob", "x0"):
        backend.fail_for(f"{email}@example.net", UncertainSendError("connection lost"))
    first, _ = send(config, store, W48, backend)
    assert (first.sent, first.uncertain) == (0, 3)
    assert "3 messages failed, more than smtp.error_threshold (2)" in first.stopped
    assert len(store.ledger("2026-W48", "pending")) == 3
    # The three stay uncertain for the operator; they must not stop the next run.
    second, delivered = send(config, store, W48)
    assert second.stopped == ""
    assert (second.sent, second.uncertain, second.failed) == (3, 3, 0)
    assert sorted(m["To"].addresses[0].addr_spec for m in delivered.messages) == [
        f"x{i}@example.net" for i in range(1, 4)
    ]
    assert store.ledger("2026-W48", "pending") == []


def test_dry_run_records_writes_and_sends_nothing(news: Site, store: Store) -> None:
    report, backend = send(news.config(), store, W48, dry_run=True)
    assert (report.sent, report.skipped) == (2, 1)
    assert report.summary().startswith("digest 2026-W48: would send 2,")
    assert backend.messages == [] and backend.attempts == 0
    assert store.ledger("2026-W48") == [] and store.get_run("2026-W48") is None
    assert not (news.output / "digests").exists()


def test_who_unsubscribed_before_the_retry_is_not_sent(news: Site, store: Store) -> None:
    config = news.config()
    backend = MemoryBackend()
    backend.fail_for("ann@example.net", TemporarySendError("451"), times=1)
    send(config, store, W48, backend)
    ann = store.get_subscriber("ann@example.net")
    assert ann is not None
    store.set_status(ann.id, "unsubscribed", now=W48)
    report, backend = send(config, store, W48)
    assert report.sent == 0 and backend.messages == []
    [row] = store.ledger("2026-W48", "failed")
    assert "no longer active" in row.error


def test_a_title_with_crlf_is_one_line_in_the_subject(news: Site, store: Store) -> None:
    # A line break in a title must neither stop the message nor start a header.
    news.post(
        "2026-11-22-evil.md",
        'title: "Hi\\r\\nBcc: victim@example.org"\ncategories: [AI技術]',
    )
    news.write_config(digest={"subject": "{{ posts[0].title }}"})
    report, backend = send(news.config(), store, W48)
    assert (report.sent, report.failed) == (2, 0)
    assert sorted(m["Subject"] for m in backend.messages) == [
        "Hi Bcc: victim@example.org",
        "Python news",
    ]
    assert all(m["Bcc"] is None for m in backend.messages)
    assert all(len(m["To"].addresses) == 1 for m in backend.messages)


def test_sending_needs_the_secret(
    news: Site, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBLISHER_SECRET", raising=False)
    with MemoryBackend() as backend, pytest.raises(ConfigError, match="PUBLISHER_SECRET"):
        send_digest(news.config(), store, backend, now=W48)
    assert store.get_run("2026-W48") is None


def test_planning_many_subscribers_at_once_is_planning_each_alone(news: Site) -> None:
    config = news.config()
    period = period_at(config, W49)
    assert period is not None
    published = load_site(config, W49)[0].published
    # Joined around fire times (Mondays 08:00 Tokyo), right at them, and after this one.
    moments = [W48 - timedelta(days=d, hours=h) for d in range(0, 24, 3) for h in (0, 1)]
    moments += [W48 - timedelta(seconds=5), period.due, period.due + timedelta(minutes=1)]
    readers = [
        Subscriber(i, f"r{i}@example.net", "", (), "active", moment, moment, None)
        for i, moment in enumerate(moments)
    ]
    together, _ = plan_selections(config, period, published, readers, lambda _id: set())
    assert len({selection.post_ids for selection in together.values()}) > 1  # floors differ
    for reader in readers:
        alone, _ = plan_selections(config, period, published, [reader], lambda _id: set())
        assert together.get(reader.id) == alone.get(reader.id), reader.created_at

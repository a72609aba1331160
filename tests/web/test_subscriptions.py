"""Double opt-in decisions and the store changes of the web app (publisher.web.subscriptions)."""

from __future__ import annotations

import email
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Config
from publisher.errors import TemporarySendError
from publisher.mail.headers import POLICY
from publisher.mail.tokens import verify_token
from publisher.site.templating import environment
from publisher.store import Store, Subscriber
from publisher.web.confirmation import confirmation_message
from publisher.web.subscriptions import Jobs, Step, Subscriptions, plan_request
from tests.conftest import Site

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=TOKYO)
SECRET = b"secret"


def person(status: str, updated: datetime = NOW) -> Subscriber:
    return Subscriber(1, "a@example.com", "", (), status, updated, updated, None)


@pytest.mark.parametrize(
    ("existing", "last_sent", "now", "step"),
    [
        (None, None, NOW, Step.CREATE),
        (person("active"), None, NOW, Step.NOTHING),
        (person("unsubscribed"), None, NOW, Step.RESTART),
        (person("pending"), None, NOW + timedelta(minutes=9), Step.NOTHING),
        (person("pending"), None, NOW + timedelta(minutes=10), Step.RESEND),
        (person("pending"), NOW + timedelta(minutes=30), NOW + timedelta(minutes=35), Step.NOTHING),
        (person("pending"), NOW + timedelta(minutes=30), NOW + timedelta(minutes=40), Step.RESEND),
    ],
)
def test_plan_request(
    existing: Subscriber | None, last_sent: datetime | None, now: datetime, step: Step
) -> None:
    assert (
        plan_request(existing, now=now, last_sent=last_sent, resend_after=timedelta(minutes=10))
        == step
    )


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def config(site: Site, store_url: str) -> Config:
    """The site, its store on each backend (tests/databases.py)."""
    site.write_config(
        site={"email": "News <news@example.com>", "title": "テストサイト"},
        server={"base_url": "https://news.example.com/"},
        store={"url": store_url},
    )
    return site.config()


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    with Store.open(config) as opened:
        yield opened


@pytest.fixture
def sent() -> list[EmailMessage]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def subs(config: Config, store: Store, sent: list[EmailMessage], clock: Clock) -> Subscriptions:
    return Subscriptions(
        config,
        store,
        secret=SECRET,
        clock=clock,
        send=sent.append,
        env=environment(config.paths.templates),
    )


def confirm_link(message: EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [line] = [line for line in text.splitlines() if "/confirm/" in line]
    return line.strip()


def test_a_new_address_is_pending_and_gets_one_confirmation(
    subs: Subscriptions, store: Store, sent: list[EmailMessage], clock: Clock
) -> None:
    assert subs.request("new@example.com", "新", ("Tech",)) is Step.CREATE
    stored = store.get_subscriber("new@example.com")
    assert stored is not None
    assert (stored.status, stored.name, stored.categories) == ("pending", "新", ("Tech",))
    [message] = sent
    assert message["To"] == "新 <new@example.com>"
    assert message["From"] == "News <news@example.com>"
    assert message["Subject"] == "テストサイト の購読確認"
    link = confirm_link(message)
    assert link.startswith("https://news.example.com/confirm/")
    assert verify_token(SECRET, link.rsplit("/", 1)[1], "confirm") == stored.id
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert f'href="{link}"' in html and 'lang="ja"' in html

    # Asked again at once: nothing; after server.confirm_resend: one more mail.
    assert subs.request("new@example.com", "", ()) is Step.NOTHING
    clock.now += timedelta(minutes=10)
    assert subs.request("NEW@example.com", "", ()) is Step.RESEND
    clock.now += timedelta(minutes=5)
    assert subs.request("new@example.com", "", ()) is Step.NOTHING
    assert len(sent) == 2
    assert store.get_subscriber("new@example.com") == stored


def test_an_active_address_is_left_alone(
    subs: Subscriptions, store: Store, sent: list[EmailMessage]
) -> None:
    before = store.add_subscriber("on@example.com", categories=("Life",), now=NOW)
    assert subs.request("on@example.com", "Other", ("Tech",)) is Step.NOTHING
    assert store.get_subscriber("on@example.com") == before
    assert sent == []


def test_a_suppressed_address_gets_no_confirmation_even_after_removal(
    subs: Subscriptions, store: Store, sent: list[EmailMessage]
) -> None:
    store.add_subscriber("gone@example.com", now=NOW)
    store.suppress("gone@example.com", "bounced", "550 no such user", now=NOW)
    assert subs.request("gone@example.com", "", ()) is Step.NOTHING
    assert store.get_subscriber("gone@example.com").status == "bounced"  # type: ignore[union-attr]
    store.remove_subscriber("gone@example.com")
    assert subs.request("gone@example.com", "", ()) is Step.NOTHING
    assert store.get_subscriber("gone@example.com") is None
    assert sent == []
    # Another address still gets its confirmation: the form works.
    assert subs.request("new@example.com", "", ()) is Step.CREATE
    assert len(sent) == 1


def test_an_unsubscribed_address_starts_again_as_pending(
    subs: Subscriptions, store: Store, sent: list[EmailMessage], clock: Clock
) -> None:
    added = store.add_subscriber("back@example.com", categories=("Life",), now=NOW)
    store.set_status(added.id, "unsubscribed", now=NOW)
    clock.now += timedelta(days=1)
    assert subs.request("back@example.com", "", ("Tech",)) is Step.RESTART
    again = store.get_subscriber("back@example.com")
    assert again is not None and (again.status, again.categories) == ("pending", ("Tech",))
    assert len(sent) == 1
    confirmed = subs.confirm(added.id)
    assert confirmed is not None and confirmed.status == "active"


def test_a_failed_confirmation_is_logged_and_the_address_stays_pending(
    config: Config, store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(message: EmailMessage) -> None:
        raise TemporarySendError("server said 451")

    subs = Subscriptions(
        config, store, secret=SECRET, clock=clock, send=refuse, env=environment(None)
    )
    with caplog.at_level(logging.ERROR, "publisher.web"):
        assert subs.request("later@example.com", "", ()) is Step.CREATE
    assert "not sent: server said 451" in caplog.text
    assert "later@example.com" not in caplog.text  # addresses stay out of logs
    assert store.get_subscriber("later@example.com").status == "pending"  # type: ignore[union-attr]


def test_link_actions_are_idempotent_and_know_removed_subscribers(
    subs: Subscriptions, store: Store, clock: Clock
) -> None:
    added = store.add_subscriber("x@example.com", now=NOW)
    clock.now += timedelta(hours=1)
    first = subs.unsubscribe(added.id)
    assert first is not None and first.status == "unsubscribed"
    clock.now += timedelta(hours=1)
    assert subs.unsubscribe(added.id) == first  # not even updated_at moves
    saved = subs.save_preferences(added.id, ("Tech", "Tech", " Life "), resume=True)
    assert saved is not None and (saved.status, saved.categories) == ("active", ("Tech", "Life"))
    store.remove_subscriber("x@example.com")
    assert subs.unsubscribe(added.id) is None
    assert subs.confirm(added.id) is None
    assert subs.save_preferences(added.id, (), resume=True) is None


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.com",
        # The mail library decodes this while it parses, and used to write the
        # line break inside it straight into the header: a real Bcc.
        "=?utf-8?q?Eve=0D=0ABcc=3A_victim@example.com?=",
        "Eve Bcc: victim@example.com " + "and a name long enough to be folded " * 2,
    ],
)
def test_no_header_can_be_smuggled_through_a_name(config: Config, name: str) -> None:
    message = confirmation_message(
        config,
        environment(None),
        email="a@example.com",
        name=name,
        confirm_url="https://news.example.com/confirm/x",
        now=NOW,
    )
    sent = email.message_from_bytes(bytes(message), policy=POLICY)
    assert sent["Bcc"] is None
    [to] = sent["To"].addresses
    assert to.addr_spec == "a@example.com"
    assert to.display_name.startswith("Eve Bcc: victim@example.com")
    head = bytes(message).split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc" not in head


def test_jobs_run_in_order_and_survive_a_failing_job(caplog: pytest.LogCaptureFixture) -> None:
    jobs = Jobs(limit=10)
    done: list[int] = []

    def fail() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, "publisher.web"):
        jobs.start()
        assert jobs.submit(lambda: done.append(1))
        assert jobs.submit(fail)
        assert jobs.submit(lambda: done.append(2))
        jobs.stop()
    assert done == [1, 2]
    assert "background job failed" in caplog.text


def test_a_full_queue_refuses_more_jobs() -> None:
    jobs = Jobs(limit=2)  # not started: nothing is taken off the queue
    assert jobs.submit(lambda: None) and jobs.submit(lambda: None)
    assert not jobs.submit(lambda: None)

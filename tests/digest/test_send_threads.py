"""The send loop with two SMTP connections (two sender threads) against a real server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Config
from publisher.digest.report import SendReport
from publisher.digest.send import send_digest
from publisher.mail import SmtpBackend
from publisher.store import Store
from tests.conftest import Site
from tests.smtp_server import SmtpServer

TOKYO = ZoneInfo("Asia/Tokyo")
W48 = datetime(2026, 11, 23, 8, 0, 5, tzinfo=TOKYO)  # just after Monday's digest fell due
JOINED = datetime(2026, 11, 10, tzinfo=TOKYO)
SECRET = b"threads test secret"
READERS = [f"reader{i:02d}@example.net" for i in range(40)]
PERIOD = "2026-W48"


@pytest.fixture
def mailing(site: Site, smtp_server: SmtpServer, store_url: str) -> Site:
    """The site sending through the test server, its store on each backend."""
    site.write_config(
        store={"url": store_url},
        digest={"from": "Test Site <news@example.com>", "backend": "smtp"},
        smtp=smtp_server.config(connections=2, max_retries=1, error_threshold=3),
    )
    site.post("2026-11-20-python-news.md", "title: Python news\ncategories: [Python]")
    site.post("2026-11-21-ai.md", "title: AIの話\ncategories: [AI技術]", "本文です。\n")
    return site


@pytest.fixture
def store(mailing: Site) -> Iterator[Store]:
    with Store.open(mailing.config()) as opened:
        for i, email in enumerate(READERS):
            opened.add_subscriber(email, name=f"Reader {i}", now=JOINED)
        yield opened


def send(config: Config, store: Store, **kw: object) -> SendReport:
    # Retries back off with no real wait: nothing here sleeps.
    with SmtpBackend(config.smtp, environ={}, sleep=lambda _seconds: None) as backend:
        return send_digest(config, store, backend, now=W48, secret=SECRET, **kw)  # type: ignore[arg-type]


def copies(server: SmtpServer) -> Counter[str]:
    return Counter(rcpt for m in server.messages for rcpt in m.rcpt_tos)


def statuses(store: Store) -> Counter[str]:
    return Counter(row.status for row in store.ledger(PERIOD))


def test_two_connections_deliver_each_reader_exactly_once(
    mailing: Site, store: Store, smtp_server: SmtpServer
) -> None:
    report = send(mailing.config(), store)
    assert (report.sent, report.failed, report.uncertain, report.stopped) == (40, 0, 0, "")
    assert copies(smtp_server) == Counter(dict.fromkeys(READERS, 1))
    assert smtp_server.connections == 2
    rows = {row.email: row for row in store.ledger(PERIOD)}
    for received in smtp_server.messages:
        [email] = received.rcpt_tos
        assert (rows[email].status, rows[email].attempts) == ("sent", 1)
        assert received.message["Message-ID"] == rows[email].message_id
        # The server announced 8BITMIME, so the digest travelled 8bit.
        assert received.mail_options == ("BODY=8BITMIME",)
        text = received.message.get_body(("plain",))
        assert text is not None and text["Content-Transfer-Encoding"] == "8bit"
        assert "AIの話" in text.get_content()
    assert send(mailing.config(), store).sent == 0  # asking again sends nothing


def test_a_server_that_takes_one_connection_gets_everything_over_it(
    mailing: Site, store: Store, smtp_server: SmtpServer
) -> None:
    smtp_server.connection_limit = 1
    report = send(mailing.config(), store)
    assert (report.sent, report.failed, report.stopped) == (40, 0, "")
    assert copies(smtp_server) == Counter(dict.fromkeys(READERS, 1))
    assert smtp_server.connections == 1


def test_the_error_threshold_stops_both_threads(
    mailing: Site, store: Store, smtp_server: SmtpServer
) -> None:
    smtp_server.behave("550")
    report = send(mailing.config(), store)
    assert "smtp.error_threshold (3)" in report.stopped
    # The fourth failure stops the run; the other thread may finish the one it holds.
    assert report.failed in (4, 5) and report.sent == 0
    assert statuses(store) == Counter({"failed": report.failed, "pending": 40 - report.failed})


def test_a_lost_connection_after_data_leaves_that_message_uncertain_only(
    mailing: Site, store: Store, smtp_server: SmtpServer
) -> None:
    smtp_server.behave("drop-after-data", recipient=READERS[7], times=1)
    report = send(mailing.config(), store)
    assert (report.sent, report.uncertain) == (39, 1)
    assert report.problems[0].startswith(f"{READERS[7]}: uncertain: ")
    assert statuses(store) == Counter({"sent": 39, "sending": 1})
    assert send(mailing.config(), store).uncertain == 1  # not sent again by itself
    assert copies(smtp_server)[READERS[7]] == 0 and len(smtp_server.dropped) == 1


class Stop(Exception):
    """What a caller raises from on_progress to stop a run (the scheduler does)."""


def test_a_stop_from_progress_never_cuts_a_message_in_half(
    mailing: Site, store: Store, smtp_server: SmtpServer
) -> None:
    def progress(done: int, _total: int) -> None:
        if done == 10:
            raise Stop

    with pytest.raises(Stop):
        send(mailing.config(), store, on_progress=progress)
    # Every message handed over was recorded as sent; nothing is left uncertain.
    done = statuses(store)
    assert "sending" not in done
    assert done["sent"] == len(smtp_server.messages) >= 10
    report = send(mailing.config(), store)
    assert report.sent == 40 - done["sent"]
    assert copies(smtp_server) == Counter(dict.fromkeys(READERS, 1))

"""``publisher digest send --to``: this period's digest sent for real to one address, recorded
nowhere."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from publisher.digest.render import PREVIEW_TOKEN
from publisher.store import Store
from tests.conftest import Site
from tests.smtp_server import SmtpServer

NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)
SECRET = {"PUBLISHER_SECRET": "test send secret"}


@pytest.fixture
def smtp_site(seed_site: Site, smtp_server: SmtpServer) -> Site:
    seed_site.post("2025-09-06-python.md", "title: Python notes\ncategories: [Python]")
    seed_site.write_config(
        digest={"from": "Test Site <news@example.com>", "backend": "smtp"},
        smtp=smtp_server.config(),
    )
    with Store.open(seed_site.config()) as store:
        store.add_subscriber(
            "bob@example.net",
            name="Bob",
            categories=("Python",),
            now=datetime(2025, 9, 1, tzinfo=UTC),
        )
    return seed_site


def test_a_test_send_reaches_one_address_marked_and_records_nothing(
    smtp_site: Site, smtp_server: SmtpServer
) -> None:
    for attempt in (1, 2):  # repeatable: nothing is recorded
        result = smtp_site.run("--now", NOW, "digest", "send", "--to", "me@example.org", env=SECRET)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("digest 2025-W37: test sent to me@example.org as ")
        assert "2 posts" in result.stdout and result.stdout.endswith("; nothing recorded\n")
        received = smtp_server.wait_for(attempt)
    first, second = received
    assert [r.rcpt_tos for r in received] == [("me@example.org",), ("me@example.org",)]
    assert first.message["Subject"].startswith("[test] Test Site: ")
    assert first.message["Message-ID"] != second.message["Message-ID"]
    html = first.message.get_body(("html",)).get_content()
    assert "MSとAWS" in html and "Python notes" in html  # every category
    # Nothing recorded: the real send still sends Bob his digest, once.
    status = smtp_site.run("--now", NOW, "digest", "status")
    assert status.stdout == "digest 2025-W37: nothing recorded\n"
    real = smtp_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert real.returncode == 0, real.stderr
    assert real.stdout == "digest 2025-W37: sent 1, skipped 0, failed 0, uncertain 0\n"
    assert smtp_server.wait_for(3)[2].rcpt_tos == ("bob@example.net",)


def test_a_test_send_as_a_subscriber_shows_their_digest(
    smtp_site: Site, smtp_server: SmtpServer
) -> None:
    result = smtp_site.run(
        "--now", NOW, "digest", "send", "--to", "me@example.org", "--as", "bob@example.net"
    )
    assert result.returncode == 0, result.stderr
    assert "as bob@example.net (1 posts" in result.stdout
    [received] = smtp_server.wait_for(1)
    html = received.message.get_body(("html",)).get_content()
    assert "Python notes" in html and "MSとAWS" not in html  # Bob follows Python only
    assert "Bob" in html  # greeted as Bob sees it
    # Its links are the preview's: the tester cannot unsubscribe Bob.
    assert f"/unsubscribe/{PREVIEW_TOKEN}" in html
    assert "bob@example.net" not in received.message["To"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "not an address"], "is not an email address"),
        (["--to", "me@example.org", "--dry-run"], "without --dry-run, --period or --late-ok"),
        (["--as", "bob@example.net"], "--as SUBSCRIBER goes with --to ADDRESS"),
        (
            ["--to", "me@example.org", "--as", "nobody@example.net"],
            "nobody@example.net: no such subscriber",
        ),
    ],
)
def test_bad_test_sends_are_one_clear_line_and_send_nothing(
    smtp_site: Site, smtp_server: SmtpServer, args: list[str], message: str
) -> None:
    result = smtp_site.run("--now", NOW, "digest", "send", *args, env=SECRET)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
    assert smtp_server.messages == []

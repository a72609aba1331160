"""No subscriber can stop a digest: hostile names, unbuildable rows, skips and retries.

End to end: the real ``publisher`` command in a subprocess, a real SQLite store and a
real SMTP server on 127.0.0.1; what is checked is what the server received and what the
operator sees.
"""

from __future__ import annotations

import base64
import sqlite3
from datetime import UTC, datetime

import pytest

from publisher.store import Store
from tests.conftest import Site
from tests.smtp_server import SmtpServer

NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)
WEDNESDAY = "2025-09-10T00:00:00+00:00"  # two days after the Monday 08:00 digest
SECRET = {"PUBLISHER_SECRET": "hostile test secret"}
ENCODED = "=?utf-8?q?Hi=0D=0ABcc=3A_evil@example.com?="
JOINED = datetime(2025, 9, 1, tzinfo=UTC)


@pytest.fixture
def smtp_site(seed_site: Site, smtp_server: SmtpServer) -> Site:
    seed_site.write_config(
        digest={"from": "Test Site <news@example.com>", "backend": "smtp"},
        smtp=smtp_server.config(),
    )
    return seed_site


def add(site: Site, *emails: str) -> None:
    with Store.open(site.config()) as store:
        for email in emails:
            store.add_subscriber(email, now=JOINED)


def force(site: Site, who: str, **columns: str) -> None:
    """Write values straight into the database, as a store made before a rule existed
    (or another tool) could have left them."""
    db = sqlite3.connect(site.root / "publisher.db")
    with db:
        for column, value in columns.items():
            db.execute(f"UPDATE subscribers SET {column} = ? WHERE email = ?", (value, who))
    db.close()


def test_hostile_names_stored_earlier_never_stop_a_send(
    smtp_site: Site, smtp_server: SmtpServer
) -> None:
    people = [f"{n}@example.net" for n in ("ann", "enc", "vt", "sep", "zed")]
    add(smtp_site, *people)
    force(smtp_site, "enc@example.net", name=ENCODED)
    force(smtp_site, "vt@example.net", name="Vee\x0bTee\x0cEff")
    force(smtp_site, "sep@example.net", name="Line\u2028Bcc: x@example.org\x85")

    result = smtp_site.run("--now", NOW, "digest", "send", env=SECRET)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "digest 2025-W37: sent 5, skipped 0, failed 0, uncertain 0\n"
    assert sorted(to for m in smtp_server.messages for to in m.rcpt_tos) == sorted(people)
    shown = {}
    for received in smtp_server.messages:
        message = received.message
        assert message["Bcc"] is None and message["Cc"] is None
        [address] = message["To"].addresses
        assert address.addr_spec == received.rcpt_tos[0]
        raw_to = received.data.split(b"\r\nTo:", 1)[1].split(b"\r\nSubject:", 1)[0]
        assert not any(0 <= c < 32 and c not in (13, 10) for c in raw_to)
        shown[address.addr_spec] = address.display_name
    assert shown["enc@example.net"] == "Hi Bcc: evil@example.com"
    assert shown["vt@example.net"] == "Vee Tee Eff"
    assert shown["sep@example.net"] == "Line Bcc: x@example.org"


def test_a_message_that_cannot_be_built_fails_alone_with_its_reason(
    smtp_site: Site, smtp_server: SmtpServer
) -> None:
    add(smtp_site, "ann@example.net", "bad@example.net", "zed@example.net")
    force(smtp_site, "bad@example.net", email="bäd@example.net")

    result = smtp_site.run("--now", NOW, "digest", "send", env=SECRET)

    assert result.returncode == 1
    assert result.stdout == "digest 2025-W37: sent 2, skipped 0, failed 1, uncertain 0\n"
    assert result.stderr == (
        "bäd@example.net: failed: To: 'bäd@example.net' is not an address a header can carry\n"
    )
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ann@example.net",
        "zed@example.net",
    ]
    status = smtp_site.run("--now", NOW, "digest", "status")
    assert "messages: 3 (pending 0, uncertain 0, sent 2, failed 1)" in status.stdout
    assert "failed: bäd@example.net: To: 'bäd@example.net' is not an address" in status.stdout
    # A later run sends nothing twice and does not fail on that row again.
    again = smtp_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "digest 2025-W37: sent 0, skipped 3, failed 0, uncertain 0\n"
    assert len(smtp_server.messages) == 2


def test_late_ok_sends_a_period_recorded_as_skipped_once(
    smtp_site: Site, smtp_server: SmtpServer
) -> None:
    add(smtp_site, "ann@example.net", "bob@example.net")
    skipped = smtp_site.run("--now", WEDNESDAY, "digest", "send", env=SECRET)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped: " in skipped.stdout and "(--late-ok sends it)" in skipped.stdout
    assert smtp_server.messages == []

    late = smtp_site.run("--now", WEDNESDAY, "digest", "send", "--late-ok", env=SECRET)
    assert late.returncode == 0, late.stderr
    assert late.stdout == "digest 2025-W37: sent 2, skipped 0, failed 0, uncertain 0\n"
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ann@example.net",
        "bob@example.net",
    ]
    status = smtp_site.run("--now", WEDNESDAY, "digest", "status")
    assert "digest 2025-W37: run done" in status.stdout

    twice = smtp_site.run("--now", WEDNESDAY, "digest", "send", "--late-ok", env=SECRET)
    assert twice.returncode == 0, twice.stderr
    assert twice.stdout == "digest 2025-W37: sent 0, skipped 2, failed 0, uncertain 0\n"
    assert len(smtp_server.messages) == 2


def test_a_skipped_period_named_by_key_says_how_to_send_it(smtp_site: Site) -> None:
    add(smtp_site, "ann@example.net")
    smtp_site.run("--now", WEDNESDAY, "digest", "send", env=SECRET)
    by_key = smtp_site.run("--now", WEDNESDAY, "digest", "send", "--period", "2025-W37", env=SECRET)
    assert by_key.returncode == 0
    assert by_key.stdout.startswith("digest 2025-W37: skipped earlier: ")
    assert by_key.stdout.endswith("(--late-ok sends it)\n")


def test_a_failed_title_is_retried_after_the_fix(smtp_site: Site, smtp_server: SmtpServer) -> None:
    add(smtp_site, "ann@example.net", "bob@example.net")
    smtp_server.behave("550", recipient="bob@example.net", times=1)
    first = smtp_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert first.returncode == 1
    assert first.stdout.splitlines() == [
        "digest 2025-W37: sent 1, skipped 0, failed 1, uncertain 0",
        "bounces: 1 hard, 0 soft; complaints: 0 (0.00% of 1 sent)",
    ]
    resolve = smtp_site.run(
        "--now", NOW, "digest", "resolve", "bob@example.net", "--not-sent", "--period", "2025-W37"
    )
    assert resolve.returncode == 2
    assert "publisher digest retry bob@example.net --period 2025-W37" in resolve.stderr

    # The 550 suppressed Bob: a retry of everyone leaves him out.
    unnamed = smtp_site.run("--now", NOW, "digest", "retry", "--period", "2025-W37", env=SECRET)
    assert unnamed.returncode == 0, unnamed.stderr
    assert unnamed.stdout.splitlines() == [
        "digest 2025-W37: 1 suppressed addresses left out"
        " (name them to retry: their mailbox must work again)",
        "digest 2025-W37: 0 failed messages back to pending",
    ]
    # The mailbox is fixed (the rule was used up): retry names him, and sends only his.
    retried = smtp_site.run(
        "--now", NOW, "digest", "retry", "bob@example.net", "--period", "2025-W37", env=SECRET
    )
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines() == [
        "bob@example.net: was bounced; mailed again",
        "digest 2025-W37: 1 failed messages back to pending",
        "digest 2025-W37: sent 1, skipped 1, failed 0, uncertain 0",
        "bounces: 1 hard, 0 soft; complaints: 0 (0.00% of 2 sent)",  # the period's, kept
    ]
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["ann@example.net", "bob@example.net"]
    status = smtp_site.run("--now", NOW, "digest", "status")
    assert "digest 2025-W37: run done" in status.stdout
    assert "messages: 2 (pending 0, uncertain 0, sent 2, failed 0)" in status.stdout

    nothing = smtp_site.run("--now", NOW, "digest", "retry", env=SECRET)
    assert nothing.returncode == 0
    assert nothing.stdout.splitlines()[0] == "digest 2025-W37: 0 failed messages back to pending"
    assert len(smtp_server.messages) == 2


def test_a_title_with_a_line_break_is_one_line_in_the_subject(
    smtp_site: Site, smtp_server: SmtpServer
) -> None:
    add(smtp_site, "ann@example.net")
    smtp_site.write_config(digest={"subject": "{{ posts[0].title }}"})
    (smtp_site.posts / "2025-09-07-ms-aws.md").unlink()
    smtp_site.post(
        "2025-09-07-two-lines.md",
        "title: |\n  First line\n  Bcc: evil@example.com\ndate: 2025-09-07 10:00:00 +0900",
    )
    result = smtp_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 0, result.stderr
    [received] = smtp_server.messages
    assert received.message["Bcc"] is None
    assert received.message["Subject"] == "First line Bcc: evil@example.com"


def nested(text: str, layers: int) -> str:
    """``text`` wrapped in ``layers`` RFC 2047 "B" encoded words, one inside the other."""
    for _ in range(layers):
        text = "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="
    return text


def test_an_encoded_line_break_in_a_title_or_name_never_reaches_the_subject(
    smtp_site: Site, smtp_server: SmtpServer
) -> None:
    deep = nested("Eve\r\nBcc: evil@example.org", 7)
    refused = smtp_site.run("subscribers", "add", "eve@example.net", "--name", deep)
    assert refused.returncode == 1 and refused.stderr.endswith(": must be one line\n")
    add(smtp_site, "ann@example.net", "eve@example.net")
    force(smtp_site, "eve@example.net", name=deep)  # as stored before the rule existed
    title = "Decoding =?utf-8?q?a=0D=0A=0D=0ABcc:_evil@example.org?= in headers"
    (smtp_site.posts / "2025-09-07-ms-aws.md").unlink()
    smtp_site.post("2025-09-07-words.md", f"title: '{title}'\ndate: 2025-09-07 10:00:00 +0900")
    smtp_site.write_config(digest={"subject": "{{ subscriber.name }}: {{ posts[0].title }}"})

    result = smtp_site.run("--now", NOW, "digest", "send", env=SECRET)

    assert result.returncode == 0, result.stderr
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ann@example.net",
        "eve@example.net",
    ]
    for received in smtp_server.messages:
        message = received.message
        assert message["Bcc"] is None
        assert message["Date"] is not None and message["Message-ID"] is not None
        assert message["Subject"].endswith(": " + title)
        head = received.data.split(b"\r\n\r\n", 1)[0]
        assert b"\r\nBcc" not in head


def test_retry_of_a_period_never_sent_is_refused(smtp_site: Site, smtp_server: SmtpServer) -> None:
    add(smtp_site, "ann@example.net")
    retried = smtp_site.run("--now", WEDNESDAY, "digest", "retry", env=SECRET)
    assert retried.returncode == 2
    assert retried.stderr == (
        "publisher: digest 2025-W37: nothing was sent for it; nothing to retry\n"
    )
    assert smtp_server.messages == []

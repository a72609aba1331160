"""``publisher digest ...`` end to end: the real command in a subprocess on a temp site."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from publisher.store import Store
from tests.conftest import REPO, Site
from tests.smtp_server import SmtpServer

NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)
SECRET = {"PUBLISHER_SECRET": "cli test secret"}
NO_SECRET = {"PUBLISHER_SECRET": ""}


@pytest.fixture
def mail_site(seed_site: Site) -> Site:
    seed_site.write_config(
        digest={"from": "Test Site <news@example.com>", "backend": "outbox"},
    )
    with Store.open(seed_site.config()) as store:
        for name in ("ann", "bob"):
            store.add_subscriber(f"{name}@example.net", now=datetime(2025, 9, 1, tzinfo=UTC))
    return seed_site


def test_preview_needs_no_secret_and_records_nothing(seed_site: Site) -> None:
    out = seed_site.root / "preview.html"
    result = seed_site.run("--now", NOW, "digest", "preview", "--out", str(out), env=NO_SECRET)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Subject: Test Site: 新着記事 1 件 · 2025年9月8日\n\n")
    assert "MSとAWS、クラウドAI投資競争の最前線" in result.stdout
    assert "https://example.com/unsubscribe/PREVIEW-not-a-real-token" in result.stdout
    assert "digest 2025-W37: 1 posts for preview@example.invalid" in result.stderr
    html = out.read_text("utf-8")
    assert "MSとAWS、クラウドAI投資競争の最前線" in html and "<table" in html
    assert not (seed_site.root / "publisher.db").exists()
    assert not (seed_site.root / "outbox").exists()
    assert not (seed_site.output / "digests").exists()


def test_preview_for_a_subscriber(mail_site: Site) -> None:
    result = mail_site.run(
        "--now", NOW, "digest", "preview", "--subscriber", "ann@example.net", env=NO_SECRET
    )
    assert result.returncode == 0, result.stderr
    assert "ann@example.net" in result.stdout
    assert (mail_site.root / "digest-preview.html").exists()
    missing = mail_site.run("--now", NOW, "digest", "preview", "--subscriber", "zed@example.net")
    assert missing.returncode == 2
    assert missing.stderr == "publisher: zed@example.net: no such subscriber\n"


def test_send_without_the_secret_is_one_line_and_exit_2(mail_site: Site) -> None:
    result = mail_site.run("--now", NOW, "digest", "send", env=NO_SECRET)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("environment variable PUBLISHER_SECRET: is not set")
    assert not (mail_site.root / "outbox").exists()


def test_a_config_value_with_crlf_is_refused(mail_site: Site) -> None:
    mail_site.write_config(digest={"reply_to": "a@example.com\r\nBcc: victim@example.org"})
    result = mail_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 2
    assert (
        result.stderr
        == "config.yaml: digest.reply_to: must be one line, got "
        + repr("a@example.com\r\nBcc: victim@example.org")
        + "\n"
    )


def test_send_to_the_outbox_then_nothing_new(mail_site: Site) -> None:
    result = mail_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "digest 2025-W37: sent 2, skipped 0, failed 0, uncertain 0\n"
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    files = sorted((mail_site.root / "outbox").glob("*.eml"))
    assert len(files) == 2
    message = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["Subject"] == "Test Site: 新着記事 1 件 · 2025年9月8日"
    assert (mail_site.output / "digests" / "2025-W37.html").exists()

    again = mail_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert again.returncode == 0
    assert again.stdout == "digest 2025-W37: sent 0, skipped 2, failed 0, uncertain 0\n"
    assert len(list((mail_site.root / "outbox").glob("*.eml"))) == 2

    status = mail_site.run("--now", NOW, "digest", "status")
    assert status.returncode == 0
    assert "digest 2025-W37: run done" in status.stdout
    assert "messages: 2 (pending 0, uncertain 0, sent 2, failed 0)" in status.stdout


def test_dry_run(mail_site: Site) -> None:
    result = mail_site.run("--now", NOW, "digest", "send", "--dry-run", env=SECRET)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "digest 2025-W37: would send 2, skipped 0, failed 0, uncertain 0\n"
    assert not (mail_site.root / "outbox").exists()
    status = mail_site.run("--now", NOW, "digest", "status")
    assert status.stdout == "digest 2025-W37: nothing recorded\n"


def test_a_refused_recipient_exits_1_and_shows_in_status(
    mail_site: Site, smtp_server: SmtpServer
) -> None:
    mail_site.write_config(digest={"backend": "smtp"}, smtp=smtp_server.config())
    smtp_server.behave("550", recipient="bob@example.net")
    result = mail_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 1
    assert result.stdout == (
        "digest 2025-W37: sent 1, skipped 0, failed 1, uncertain 0\n"
        "bounces: 1 hard, 0 soft; complaints: 0 (0.00% of 1 sent)\n"
    )
    assert result.stderr.startswith("bob@example.net: failed: bob@example.net: 550 5.1.1")
    assert [m.rcpt_tos for m in smtp_server.messages] == [("ann@example.net",)]
    status = mail_site.run("--now", NOW, "digest", "status", "--period", "2025-W37")
    assert "messages: 2 (pending 0, uncertain 0, sent 1, failed 1)" in status.stdout
    assert "failed: bob@example.net: bob@example.net: 550 5.1.1 No such user here" in status.stdout
    assert "(address suppressed)" in result.stderr
    assert "bounces: 1 hard, 0 soft; complaints: 0 (0.00% of 1 sent)" in status.stdout
    listed = mail_site.run("subscribers", "list")
    assert "bob@example.net" in listed.stdout and "bounced" in listed.stdout
    assert "550 5.1.1 No such user here" in listed.stdout  # the reason, with its time


def test_a_5xx_at_data_is_a_hard_bounce_and_next_week_mails_the_address_nothing(
    mail_site: Site, smtp_server: SmtpServer
) -> None:
    mail_site.write_config(digest={"backend": "smtp"}, smtp=smtp_server.config())
    smtp_server.behave("550-data", recipient="ann@example.net")
    result = mail_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 1
    assert "ann@example.net: failed: " in result.stderr and "(address suppressed)" in result.stderr
    with Store.open(mail_site.config()) as store:
        ann = store.get_subscriber("ann@example.net")
        assert ann is not None and ann.status == "bounced"
    mail_site.post("2025-09-10-next.md", "title: Next week")
    smtp_server.behave("accept", recipient="ann@example.net")
    later = mail_site.run("--now", "2025-09-15T00:00:00+00:00", "digest", "send", env=SECRET)
    assert later.returncode == 0, later.stderr
    assert later.stdout.startswith("digest 2025-W38: sent 1,")
    assert [m.rcpt_tos for m in smtp_server.messages][-1] == ("bob@example.net",)
    assert all(m.rcpt_tos != ("ann@example.net",) for m in smtp_server.messages)


def test_resolve_refuses_a_message_that_is_not_uncertain(mail_site: Site) -> None:
    mail_site.run("--now", NOW, "digest", "send", env=SECRET)
    result = mail_site.run(
        "--now", NOW, "digest", "resolve", "ann@example.net", "--period", "2025-W37", "--sent"
    )
    assert result.returncode == 2
    assert "is sent, not uncertain; nothing to resolve" in result.stderr
    usage = mail_site.run("--now", NOW, "digest", "resolve", "ann@example.net")
    assert usage.returncode == 2 and "--sent or --not-sent" in usage.stderr


def test_send_and_resolve_wait_for_a_send_in_progress(mail_site: Site) -> None:
    from publisher.schedule.lock import DIGEST_LOCK, StateLock, lock_path

    with StateLock(lock_path(mail_site.config(), DIGEST_LOCK)):
        send = mail_site.run("--now", NOW, "digest", "send", env=SECRET)
        resolve = mail_site.run("--now", NOW, "digest", "resolve", "ann@example.net", "--not-sent")
    assert send.returncode == 2
    assert send.stderr == f"publisher: a digest is being sent (pid {os.getpid()})\n"
    assert resolve.returncode == 2
    assert resolve.stderr.startswith("publisher: a digest is being sent; resolve after it")
    assert not (mail_site.root / "outbox").exists()


def test_progress_bar_only_on_a_terminal(mail_site: Site) -> None:
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "publisher", "--now", NOW, "digest", "send"],
            cwd=mail_site.root,
            env={**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm", **SECRET},
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=60,
            check=False,
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert result.returncode == 0
    assert result.stdout == b"digest 2025-W37: sent 2, skipped 0, failed 0, uncertain 0\n"
    assert b"sending" in shown and b"2/2" in shown


def test_send_started_late_by_cron_skips_a_period_past_max_lateness(mail_site: Site) -> None:
    # Wednesday: the Monday 08:00 digest is two days late, beyond the default 24 hours,
    # as after a systemd timer with Persistent=true catches up on a machine that was down.
    wednesday = "2025-09-10T00:00:00+00:00"
    late = mail_site.run("--now", wednesday, "digest", "send", env=SECRET)
    assert late.returncode == 0, late.stderr
    assert late.stdout.startswith(
        "digest 2025-W37: skipped: 2025-W37 (due 2025-09-08T08:00:00+09:00) was missed"
    )
    assert late.stdout.rstrip().endswith("(--late-ok sends it)")
    assert not (mail_site.root / "outbox").exists()
    # The skip is recorded: a later run in the same week does not send it either...
    again = mail_site.run("--now", wednesday, "digest", "send", env=SECRET)
    assert again.returncode == 0
    assert again.stdout.startswith("digest 2025-W37: skipped earlier: 2025-W37 (due")
    assert not (mail_site.root / "outbox").exists()


def test_late_ok_sends_a_late_period_once(mail_site: Site) -> None:
    wednesday = "2025-09-10T00:00:00+00:00"
    sent = mail_site.run("--now", wednesday, "digest", "send", "--late-ok", env=SECRET)
    assert sent.returncode == 0, sent.stderr
    assert "sent 2," in sent.stdout
    assert len(list((mail_site.root / "outbox").rglob("*.eml"))) == 2

"""Exactly once, proved the hard way: ``kill -9`` a real ``publisher digest send``.

A real aiosmtpd server in this process receives the digest from the real
command in a subprocess, and kills that process with SIGKILL from inside its
own SMTP handler at a chosen moment:

* ``before``: the Nth message has been read in full but not yet answered: the
  sender dies not knowing whether it arrived (it did);
* ``after``: the Nth message was answered 250 and the sender has moved on to
  the next one; it dies at RCPT of message N+1 (which never arrives).

Then ``digest send`` runs again: every subscriber must have exactly one copy,
except the one message reported as uncertain, which must have at most one and
must not have been sent again by itself. The operator resolves it from what the
server saw, the next run sends what is owed, and in the end each of the 30
subscribers holds exactly one copy.

With one connection (``smtp.connections: 1``) exactly one message is in doubt
and the test knows which. With two sender threads the other thread may hold a
claimed message of its own at the moment of the kill, so one or two are in
doubt; the guarantee is the same: each is settled by the operator from what
the server saw, and nobody gets two copies.

Each case runs on SQLite and on PostgreSQL (when PUBLISHER_TEST_POSTGRES_URL is
set): a killed client's open transaction must come to nothing on both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from publisher.store import Store
from tests.conftest import REPO, Site
from tests.smtp_server import Received, SmtpServer

NOW = "2025-09-08T00:00:00+00:00"  # digest 2025-W37 of the seed post, an hour after it fell due
PERIOD = "2025-W37"
SECRET = {"PUBLISHER_SECRET": "exactly once secret"}
SUBSCRIBERS = [f"reader{i:02d}@example.net" for i in range(30)]


class KillingServer(SmtpServer):
    """The test SMTP server, able to SIGKILL the sender from inside its handler."""

    def __init__(self) -> None:
        super().__init__()
        self.victim: subprocess.Popen[str] | None = None
        self.kill_at = 0
        self.mode = ""

    def _kill(self) -> None:
        if self.victim is not None:
            os.kill(self.victim.pid, signal.SIGKILL)
            self.victim = None

    def _record(self, received: Received, *, dropped: bool) -> None:
        # Runs in the DATA handler, before it answers 250: a kill here means the
        # sender never learns that the server took the message.
        super()._record(received, dropped=dropped)
        if self.mode == "before" and len(self.messages) == self.kill_at:
            self._kill()

    def _take(self, recipient: str, stage: str) -> str:
        # RCPT of the message after the Nth: the Nth was answered 250 and recorded.
        # (At or after: with two connections both may have finished one meanwhile.)
        if self.mode == "after" and stage == "rcpt" and len(self.messages) >= self.kill_at:
            self._kill()
        return super()._take(recipient, stage)


@pytest.fixture
def killing_server() -> Iterator[KillingServer]:
    with KillingServer() as server:
        yield server


def copies(server: SmtpServer) -> Counter[str]:
    return Counter(rcpt for m in server.messages for rcpt in m.rcpt_tos)


def uncertain_in(stderr: str) -> list[str]:
    return [line.split(":", 1)[0] for line in stderr.splitlines() if ": uncertain:" in line]


def kill_a_send(
    site: Site, server: KillingServer, store_url: str, *, connections: int, mode: str, kill_at: int
) -> None:
    """Subscribe everyone, start a real `digest send` and let the server SIGKILL it mid-run."""
    site.write_config(
        store={"url": store_url},
        # A short lease: on PostgreSQL the rows the killed sender had claimed but not
        # begun come free for the next run when it ends.
        digest={"from": "Test Site <news@example.com>", "backend": "smtp", "lease": 1},
        smtp=server.config(max_retries=1, connections=connections),
    )
    with Store.open(site.config()) as store:
        for email in SUBSCRIBERS:
            store.add_subscriber(email, now=datetime(2025, 9, 1, tzinfo=UTC))

    server.mode, server.kill_at = mode, kill_at
    victim = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--now", NOW, "digest", "send"],
        cwd=site.root,
        env={**os.environ, "PYTHONPATH": str(REPO), **SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server.victim = victim
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    server.mode = ""


@pytest.mark.parametrize(
    ("kill_at", "mode"), [(1, "before"), (5, "after"), (17, "before"), (30, "before")]
)
def test_a_killed_send_delivers_each_subscriber_exactly_once(
    seed_site: Site, killing_server: KillingServer, kill_at: int, mode: str, store_url: str
) -> None:
    site, server = seed_site, killing_server
    # 1. The run is killed mid-way.
    kill_a_send(site, server, store_url, connections=1, mode=mode, kill_at=kill_at)
    assert len(server.messages) == kill_at
    assert max(copies(server).values()) == 1

    # The ledger knows exactly which message is in doubt.
    in_doubt = SUBSCRIBERS[kill_at - 1] if mode == "before" else SUBSCRIBERS[kill_at]
    status = site.run("--now", NOW, "digest", "status")
    assert "uncertain 1," in status.stdout
    assert f"uncertain: {in_doubt} (attempts 1," in status.stdout

    # 2. Run again: everything owed goes out, the uncertain one is not re-sent.
    again = site.run("--now", NOW, "digest", "send", env=SECRET)
    assert again.returncode == 1, again.stderr
    assert uncertain_in(again.stderr) == [in_doubt]
    assert "uncertain 1" in again.stdout
    got = copies(server)
    for email in SUBSCRIBERS:
        if email == in_doubt:
            assert got[email] == (1 if mode == "before" else 0)
        else:
            assert got[email] == 1, email

    # 3. The operator checks the server and resolves; the next run sends the rest.
    verdict = "--sent" if got[in_doubt] else "--not-sent"
    resolved = site.run("--now", NOW, "digest", "resolve", in_doubt, "--period", PERIOD, verdict)
    assert resolved.returncode == 0, resolved.stderr
    final = site.run("--now", NOW, "digest", "send", env=SECRET)
    assert final.returncode == 0, final.stderr
    sent_now = 0 if mode == "before" else 1
    assert final.stdout == (
        f"digest {PERIOD}: sent {sent_now}, skipped {30 - sent_now}, failed 0, uncertain 0\n"
    )

    assert copies(server) == Counter(dict.fromkeys(SUBSCRIBERS, 1))
    ids = [m.message["Message-ID"] for m in server.messages]
    assert len(set(ids)) == 30
    status = site.run("--now", NOW, "digest", "status")
    assert "messages: 30 (pending 0, uncertain 0, sent 30, failed 0)" in status.stdout
    assert "run done" in status.stdout


@pytest.mark.parametrize(("kill_at", "mode"), [(5, "after"), (17, "before")])
def test_a_killed_send_with_two_connections_still_delivers_exactly_once(
    seed_site: Site, killing_server: KillingServer, kill_at: int, mode: str, store_url: str
) -> None:
    site, server = seed_site, killing_server
    kill_a_send(site, server, store_url, connections=2, mode=mode, kill_at=kill_at)
    assert max(copies(server).values()) == 1

    # One or two messages are in doubt: each thread may have held one.
    with Store.open(site.config()) as store:
        in_doubt = [row.email for row in store.ledger(PERIOD, "sending")]
    assert 1 <= len(in_doubt) <= 2

    again = site.run("--now", NOW, "digest", "send", env=SECRET)
    assert again.returncode == 1, again.stderr
    assert sorted(uncertain_in(again.stderr)) == sorted(in_doubt)
    got = copies(server)
    assert all(got[email] == 1 for email in SUBSCRIBERS if email not in in_doubt)
    assert all(got[email] <= 1 for email in in_doubt)
    assert len(server.messages) == 30 - sum(1 for email in in_doubt if got[email] == 0)

    for email in in_doubt:
        verdict = "--sent" if got[email] else "--not-sent"
        resolved = site.run("--now", NOW, "digest", "resolve", email, "--period", PERIOD, verdict)
        assert resolved.returncode == 0, resolved.stderr
    final = site.run("--now", NOW, "digest", "send", env=SECRET)
    assert final.returncode == 0, final.stderr
    assert copies(server) == Counter(dict.fromkeys(SUBSCRIBERS, 1))
    assert len({m.message["Message-ID"] for m in server.messages}) == 30
    status = site.run("--now", NOW, "digest", "status")
    assert "messages: 30 (pending 0, uncertain 0, sent 30, failed 0)" in status.stdout

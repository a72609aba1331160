"""Several ``publisher digest send`` processes share one period on PostgreSQL, exactly once.

Four real sender processes start together against one real SMTP server
(aiosmtpd in this process) and one PostgreSQL database. Exactly one plans the
period; all of them claim batches of its rows and send them. In each of ten
rounds (a new post, a new week's digest) the server SIGKILLs one or two of the
senders when it has taken a chosen number of messages; the survivors take over
the rows the killed ones had claimed but not begun, once their lease runs out,
and the killed ones are started again. Then the round is counted: no
Message-ID arrived twice, every subscriber got the week's digest or has its
row reported uncertain (or failed), and at most one row is uncertain per
connection of each killed sender.

Needs PUBLISHER_TEST_POSTGRES_URL (``bash .ci/postgres``); skipped without it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from publisher.store import Store
from tests.conftest import REPO, Site
from tests.smtp_server import free_port

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX signals")

SUBSCRIBERS = 5000
SENDERS = 4
CONNECTIONS = 2  # per sender: each may hold one message in flight when killed
ROUNDS = 10
SECRET = {"PUBLISHER_SECRET": "shared senders secret"}
FIRST_MONDAY = datetime(2025, 9, 15, 9, 0, tzinfo=UTC)  # an hour after the digest fell due
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class Sink:
    """Takes every message, keeps (recipient, Message-ID), and kills senders on cue."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, str]] = []
        self.kills: list[tuple[int, subprocess.Popen[str]]] = []  # (at count, victim)
        self.killed: list[subprocess.Popen[str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        found = _MESSAGE_ID.search(data)
        message_id = found.group(1).decode() if found else ""
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append((rcpt.lower(), message_id))
            count = len(self.received)
            due = [victim for at, victim in self.kills if at <= count]
            self.kills = [(at, victim) for at, victim in self.kills if at > count]
        for victim in due:
            # Before this message is answered: the victim may have sent it and never
            # learn that it arrived (it did): the uncertain case.
            if victim.poll() is None:
                victim.kill()
                self.killed.append(victim)
        return "250 OK: queued"


def _start(site: Site, now: datetime) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "publisher", "--now", now.isoformat(), "digest", "send"],
        cwd=site.root,
        env={**os.environ, "PYTHONPATH": str(REPO), **SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _post(site: Site, number: int, day: datetime) -> None:
    site.post(
        f"{day:%Y-%m-%d}-week-{number}.md",
        f"title: Week {number}\ndate: {day:%Y-%m-%d} 10:00:00 +0000\ncategories: [News]",
        f"What happened in week {number}.\n",
    )


def test_four_senders_killed_at_random_still_send_each_digest_exactly_once(
    site: Site, postgres_url: str
) -> None:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        site.write_config(
            store={"url": postgres_url},
            digest={
                "from": "Test Site <news@example.com>",
                "backend": "smtp",
                "lease": 1,  # seconds: the killed senders' claims come free quickly
                "claim_batch": 50,
            },
            smtp={
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "connections": CONNECTIONS,
                "max_retries": 1,
            },
        )
        emails = [f"reader{i:05d}@example.net" for i in range(SUBSCRIBERS)]
        with Store.open(site.config()) as store:
            for email in emails:
                store.add_subscriber(email, now=datetime(2025, 9, 1, tzinfo=UTC))

        rng = random.Random(12)
        total_killed = 0
        for number in range(ROUNDS):
            now = FIRST_MONDAY + timedelta(weeks=number)
            _post(site, number, now - timedelta(days=1))
            start = len(sink.received)
            senders = [_start(site, now) for _ in range(SENDERS)]
            victims = rng.sample(senders, rng.choice((1, 2)))
            moments = sorted(rng.randrange(1, SUBSCRIBERS) for _ in victims)
            with sink.lock:
                sink.kills = [(start + at, v) for at, v in zip(moments, victims, strict=True)]
            results: dict[int, Any] = {}
            for sender in senders:
                _out, err = sender.communicate(timeout=300)
                results[sender.pid] = (sender.returncode, err)
            with sink.lock:
                sink.kills = []  # a victim that finished before its moment is not killed
                killed = [v for v in victims if v in sink.killed]
            # (One that finished its last message as the kill came counts as killed.)
            killed = [v for v in killed if v.returncode == -signal.SIGKILL]
            total_killed += len(killed)
            for sender in senders:
                if sender not in killed:
                    code, err = results[sender.pid]
                    assert code in (0, 1), err  # 1: an uncertain row is reported
            # The killed senders start again, and find what is left, if anything.
            for restart in [_start(site, now) for _ in killed]:
                _out, err = restart.communicate(timeout=300)
                assert restart.returncode in (0, 1), err

            if number == 0:
                # Each sender has its line: what it claimed and sent (a restarted one
                # that found nothing left to send has none); a killed one has gone silent.
                shown = site.run("--now", now.isoformat(), "digest", "status").stdout
                lines = [line for line in shown.splitlines() if line.startswith("sender ")]
                assert SENDERS <= len(lines) <= SENDERS + len(killed), shown
                silent = [line for line in lines if "(stopped?)" in line]
                assert len(silent) == len(killed), shown
                claimed = sum(int(re.search(r"claimed (\d+)", x).group(1)) for x in lines)  # type: ignore[union-attr]
                assert claimed >= SUBSCRIBERS, shown
            got = sink.received[start:]
            ids = Counter(message_id for _, message_id in got)
            assert max(ids.values()) == 1, f"round {number}: a message arrived twice"
            copies = Counter(rcpt for rcpt, _ in got)
            with Store.open(site.config()) as store:
                run = store.last_run()
                assert run is not None
                key = run.digest
                status = {row.email: row.status for row in store.ledger(key)}
            assert set(status) == set(emails), f"round {number}: not everyone was planned"
            assert "pending" not in status.values(), f"round {number}: rows left pending"
            uncertain = [e for e, s in status.items() if s == "sending"]
            assert len(uncertain) <= CONNECTIONS * len(killed), (number, uncertain, moments)
            for email in emails:
                if status[email] == "sent":
                    assert copies[email] == 1, (number, email)
                else:  # uncertain (it may have arrived, once) or failed
                    assert status[email] in ("sending", "failed") and copies[email] <= 1
            # The operator settles the uncertain rows from what the server saw.
            for email in uncertain:
                verdict = "--sent" if copies[email] else "--not-sent"
                settled = site.run("digest", "resolve", email, "--period", key, verdict)
                assert settled.returncode == 0, settled.stderr
            if any(copies[e] == 0 for e in uncertain):
                final = _start(site, now)
                final.communicate(timeout=300)
                assert final.returncode == 0
            got = sink.received[start:]
            assert Counter(rcpt for rcpt, _ in got) == Counter(dict.fromkeys(emails, 1))
        assert total_killed >= ROUNDS  # at least as many SIGKILLs as rounds
    finally:
        controller.stop()

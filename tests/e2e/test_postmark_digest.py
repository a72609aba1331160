"""``publisher digest send`` through Postmark's batch API: the real command, a real HTTP server.

The server is the fake of ``tests/mail/fake_postmark.py`` on 127.0.0.1, which
speaks the documented subset of the batch endpoint and throttles, fails and
hangs on cue. Each test counts what it accepted against the ledger: every
reader ends with exactly one accepted message, or a failed or uncertain row.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime

import pytest

from publisher.store import Store
from tests.conftest import REPO, Site
from tests.mail.fake_postmark import FakePostmark

NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)
JOINED = datetime(2025, 9, 1, tzinfo=UTC)
TOKEN = "test-server-token"
ENV = {"PUBLISHER_SECRET": "postmark test secret", "PUBLISHER_POSTMARK_TOKEN": TOKEN}


def _site(site: Site, fake: FakePostmark, store_url: str, **postmark: object) -> Site:
    site.write_config(
        digest={"from": "Test Site <news@example.com>", "backend": "postmark"},
        postmark={"url": fake.url, **postmark},
        store={"url": store_url},
    )
    return site


def _readers(site: Site, count: int) -> list[str]:
    emails = [f"reader{i:04d}@example.net" for i in range(count)]
    with Store.open(site.config()) as store:
        for email in emails:
            store.add_subscriber(email, now=JOINED)
    return emails


def _ledger(site: Site) -> dict[str, tuple[str, str]]:
    """email -> (status, provider_id) of this week's rows."""
    with Store.open(site.config()) as store:
        return {row.email: (row.status, row.provider_id) for row in store.ledger("2025-W37")}


def _accepted(fake: FakePostmark) -> Counter[str]:
    return Counter(r for accepted in fake.accepted for r in accepted.recipients)


def test_a_digest_through_throttling_and_an_outage_reaches_each_reader_once(
    seed_site: Site, store_url: str
) -> None:
    inactive = {"reader0007@example.net", "reader1000@example.net"}
    with FakePostmark(
        TOKEN, inactive=inactive, unavailable={2}, throttle_after=4, throttle_for=2
    ) as fake:
        site = _site(fake=fake, site=seed_site, store_url=store_url, batch_size=100)
        emails = _readers(site, 1234)
        result = site.run("--now", NOW, "digest", "send", env=ENV, timeout=300)
        again = site.run("--now", NOW, "digest", "send", env=ENV, timeout=300)

    # Two readers Postmark will not send to: the run says so and exits 1.
    assert result.returncode == 1, result.stderr
    assert "sent 1232" in result.stdout + result.stderr
    for email in inactive:
        assert f"{email}: failed: postmark 406" in result.stderr
    # 13 batches of at most 100, a 503 and two 429s retried: each reader once.
    accepted = _accepted(fake)
    assert set(accepted) == set(emails) - inactive
    assert set(accepted.values()) == {1}
    assert max(r.messages for r in fake.requests) == 100
    assert [r.status for r in fake.requests].count(429) == 2
    ledger = _ledger(site)
    ids = {a.recipients[0]: a.message_id for a in fake.accepted}
    for email in emails:
        if email in inactive:
            assert ledger[email] == ("failed", "")
        else:
            # Postmark's MessageID is in the ledger, for its webhooks and searches.
            assert ledger[email] == ("sent", ids[email])
    with Store.open(site.config()) as store:
        assert {s.email for s in store.list_suppressions()} == inactive
    # Asked again for the same week, nothing more goes out.
    assert len(fake.accepted) == 1232
    assert "sent 0" in again.stdout + again.stderr


def test_a_request_whose_answer_never_came_is_uncertain_and_never_sent_again(
    seed_site: Site, store_url: str
) -> None:
    with FakePostmark(TOKEN, hang={2}, hang_seconds=10) as fake:
        site = _site(fake=fake, site=seed_site, store_url=store_url, batch_size=50, timeout=1)
        emails = _readers(site, 200)
        first = site.run("--now", NOW, "digest", "send", env=ENV, timeout=120)
        second = site.run("--now", NOW, "digest", "send", env=ENV, timeout=120)

    assert first.returncode == 1 and second.returncode == 1
    # The fake took the second request's 50 messages; the client timed out waiting.
    accepted = _accepted(fake)
    assert set(accepted) == set(emails) and set(accepted.values()) == {1}
    ledger = _ledger(site)
    hung = {r for a in fake.accepted if a.request == 2 for r in a.recipients}
    assert len(hung) == 50
    assert {email for email, (status, _) in ledger.items() if status == "sending"} == hung
    assert {status for email, (status, _) in ledger.items() if email not in hung} == {"sent"}
    assert "uncertain 50" in first.stdout + first.stderr
    assert "publisher digest resolve" in second.stderr
    assert len(fake.requests) == 4  # nothing was sent twice, or sent by the second run


def test_without_the_token_the_run_stops_with_one_line(seed_site: Site) -> None:
    with FakePostmark(TOKEN) as fake:
        site = _site(fake=fake, site=seed_site, store_url="sqlite:///publisher.db")
        _readers(site, 2)
        result = site.run(
            "--now", NOW, "digest", "send", env={**ENV, "PUBLISHER_POSTMARK_TOKEN": ""}
        )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "publisher: postmark: no server token: set the environment variable"
        " PUBLISHER_POSTMARK_TOKEN (postmark.token_env) to the server's API token"
    ]
    assert fake.requests == []


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_senders_share_the_accounts_rate_limit(seed_site: Site, store_url: str) -> None:
    rate, readers = 100, 400
    with FakePostmark(TOKEN) as fake:
        site = _site(fake=fake, site=seed_site, store_url=store_url, batch_size=20, rate_limit=rate)
        emails = _readers(site, readers)
        senders = [
            subprocess.Popen(
                [sys.executable, "-m", "publisher", "--now", NOW, "digest", "send"],
                cwd=site.root,
                env={**os.environ, "PYTHONPATH": str(REPO), **ENV},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [sender.communicate(timeout=120) for sender in senders]
    assert [sender.returncode for sender in senders] == [0, 0], outputs
    accepted = _accepted(fake)
    assert set(accepted) == set(emails) and set(accepted.values()) == {1}
    # Both sent; together no faster than the account's rate. (Each at the rate on its
    # own would have taken half the time.) The first half second's slots are taken at once.
    assert all("sent 0," not in out + err for out, err in outputs)
    span = fake.requests[-1].at - fake.requests[0].at
    assert span >= (readers - rate / 2 - 20) / rate - 0.2, span
    by_time = sorted(fake.requests, key=lambda r: r.at)
    start = by_time[0].at
    sent = 0
    for request in by_time:
        sent += request.messages
        assert sent <= rate * (request.at - start) + rate / 2 + 2 * 20, (sent, request.at - start)

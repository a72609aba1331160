"""Bounces and complaints in: each sample read as a bounce reader would, then a real
Maildir scanned by the real ``publisher bounces scan``, which suppresses the addresses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.mail.bounces import read_bounce
from publisher.mail.verp import return_path
from publisher.store import Store
from tests.conftest import Site

SAMPLES = Path(__file__).parent / "bounces"
KEY = b"bounce test secret"
SECRET = {"PUBLISHER_SECRET": KEY.decode()}
RP = return_path(KEY, "bounces@example.com", 7)
NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)


def sample(name: str, rp: str = RP, rcpt: str = "ann@example.net") -> bytes:
    text = (SAMPLES / name).read_text("utf-8").replace("{RP}", rp).replace("{RCPT}", rcpt)
    return text.replace("\n", "\r\n").encode("utf-8")


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        (
            "postfix-hard.eml",
            "hard",
            "5.1.1 550 5.1.1 <ann@example.net>: Recipient address rejected",
        ),
        (
            "gmail-hard.eml",
            "hard",
            "5.1.1 The email account that you tried to reach does not exist",
        ),
        ("outlook-hard.eml", "hard", "5.1.10 550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
        ("exim-hard.eml", "hard", "550 5.1.1 No such mailbox here"),
        ("postfix-soft.eml", "soft", "4.2.2 452 4.2.2 Mailbox full"),
        ("arf-complaint.eml", "complaint", "complaint: abuse"),
    ],
)
def test_each_kind_of_bounce_names_its_address_its_kind_and_why(
    name: str, kind: str, reason: str
) -> None:
    bounce = read_bounce(sample(name))
    assert bounce is not None
    assert (bounce.kind, bounce.recipient) == (kind, "ann@example.net")
    assert bounce.reason.startswith(reason)
    assert RP in bounce.return_paths


def test_a_reply_is_not_a_bounce() -> None:
    assert read_bounce(sample("not-a-bounce.eml")) is None


@pytest.fixture
def sent_site(seed_site: Site) -> Site:
    seed_site.write_config(
        digest={
            "from": "Test Site <news@example.com>",
            "backend": "outbox",
            "bounce_address": "bounces@example.com",
        },
        bounces={"soft_limit": 2},
    )
    with Store.open(seed_site.config()) as store:
        for name in ("ann", "bob", "cho", "dan"):
            store.add_subscriber(f"{name}@example.net", now=datetime(2025, 9, 1, tzinfo=UTC))
    assert seed_site.run("--now", NOW, "digest", "send", env=SECRET).returncode == 0
    return seed_site


def test_a_scan_suppresses_by_the_return_path_and_never_counts_a_file_twice(
    sent_site: Site,
) -> None:
    with Store.open(sent_site.config()) as store:
        rows = {row.email: row.id for row in store.ledger("2025-W37")}
    path = {email: return_path(KEY, "bounces@example.com", row) for email, row in rows.items()}
    maildir = sent_site.root / "bounces"
    for folder in ("new", "cur", "tmp"):
        (maildir / folder).mkdir(parents=True)
    # Ann's mailbox forwards to an address the report names: the return path says who.
    files = {
        "1.hard": sample("exim-hard.eml", path["ann@example.net"], "ann@forward.example.org"),
        "2.complaint": sample("arf-complaint.eml", path["bob@example.net"], "bob@example.net"),
        "3.soft": sample("postfix-soft.eml", path["cho@example.net"], "cho@example.net"),
        "4.soft": sample("postfix-soft.eml", path["dan@example.net"], "dan@example.net"),
        "5.soft": sample("postfix-soft.eml", path["dan@example.net"], "dan@example.net"),
        "6.reply": sample("not-a-bounce.eml"),
        # A forged return path names no row; the report's own recipient is used.
        "7.forged": sample(
            "gmail-hard.eml", "bounces+1-aaaaaaaaaaaaaaaa@example.com", "eve@example.net"
        ),
    }
    for name, data in files.items():
        (maildir / "new" / name).write_bytes(data)

    run = sent_site.run("bounces", "scan", "bounces", env=SECRET)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == (
        "bounces: 2 hard, 3 soft, 1 complaints; 4 addresses suppressed;"
        " 1 not understood (left in bounces/new)"
    )
    assert "6.reply: not a bounce or complaint" in run.stderr
    assert sorted(p.name for p in (maildir / "new").iterdir()) == ["6.reply"]
    assert len(list((maildir / "cur").iterdir())) == 6
    with Store.open(sent_site.config()) as store:
        status = {s.email: s.status for s in store.list_subscribers()}
        assert status == {
            "ann@example.net": "bounced",
            "bob@example.net": "complained",
            "cho@example.net": "active",  # one soft bounce of two
            "dan@example.net": "bounced",  # two soft bounces: the limit
        }
        assert store.suppression("eve@example.net") is not None  # never subscribed: kept
        ann = store.suppression("ann@example.net")
        assert ann is not None and "550 5.1.1 No such mailbox here" in ann.reason

    # The period's bounces and complaints, and the complaint rate past 0.3%: a warning.
    # (Eve's bounce names no message of the period: it is not counted in it.)
    status = sent_site.run("--now", NOW, "digest", "status")
    assert "bounces: 1 hard, 3 soft; complaints: 1 (25.00% of 4 sent)" in status.stdout
    assert status.stderr == (
        "warning: digest 2025-W37: complaint rate 25.00% is above 0.3%:"
        " Gmail and Yahoo may refuse or spam-folder this sender's mail\n"
    )

    again = sent_site.run("bounces", "scan", "bounces", env=SECRET)
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1].startswith("bounces: 0 hard, 0 soft, 0 complaints;")


def test_a_folder_that_is_not_a_maildir_is_one_line(sent_site: Site) -> None:
    run = sent_site.run("bounces", "scan", "nowhere", env=SECRET)
    assert run.returncode == 2
    assert run.stderr.strip() == "publisher: nowhere: not a Maildir (no new/ folder)"

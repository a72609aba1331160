"""VERP: each digest's envelope sender names its ledger row, signed, so a bounce can be tied
to one subscriber and one message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from publisher.mail.verp import return_path, row_of
from publisher.store import Store
from tests.conftest import Site
from tests.smtp_server import SmtpServer

NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post (2025-W37)
SECRET = {"PUBLISHER_SECRET": "verp test secret"}
KEY = b"verp test secret"


def test_each_message_has_its_own_return_path_naming_its_row(
    seed_site: Site, smtp_server: SmtpServer
) -> None:
    seed_site.write_config(
        digest={
            "from": "Test Site <news@example.com>",
            "backend": "smtp",
            "bounce_address": "bounces@example.com",
        },
        smtp=smtp_server.config(),
    )
    people = ("ann@example.net", "bob@example.net", "cho@example.net")
    with Store.open(seed_site.config()) as store:
        for email in people:
            store.add_subscriber(email, now=datetime(2025, 9, 1, tzinfo=UTC))
    result = seed_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 0, result.stderr
    received = smtp_server.wait_for(3)
    assert len({r.mail_from for r in received}) == 3
    with Store.open(seed_site.config()) as store:
        for message in received:
            assert message.mail_from.startswith("bounces+")
            assert message.mail_from.endswith("@example.com")
            assert len(message.mail_from.split("@")[0]) <= 64
            row_id = row_of(KEY, message.mail_from, "bounces@example.com")
            assert row_id is not None
            row = store.get_ledger_row(row_id)
            assert row is not None and (row.email,) == message.rcpt_tos
            assert message.message["From"] == "Test Site <news@example.com>"  # unchanged


def test_a_forged_or_altered_return_path_names_no_row() -> None:
    good = return_path(KEY, "bounces@example.com", 41)
    assert row_of(KEY, good, "bounces@example.com") == 41
    assert row_of(KEY, good.upper(), "bounces@example.com") == 41  # servers may change case
    assert row_of(KEY, f"<{good}>", "bounces@example.com") == 41
    local, domain = good.split("@")
    row, signature = local.split("+")[1].split("-")
    assert row_of(KEY, f"bounces+42-{signature}@{domain}", "bounces@example.com") is None
    assert row_of(b"another secret", good, "bounces@example.com") is None
    assert row_of(KEY, good.replace("example.com", "example.org"), "bounces@example.com") is None
    assert row_of(KEY, "bounces@example.com", "bounces@example.com") is None
    assert row_of(KEY, f"bounces+{row}@{domain}", "bounces@example.com") is None
    assert row_of(KEY, f"other+{row}-{signature}@{domain}", "bounces@example.com") is None


@pytest.mark.parametrize(
    "address",
    ["bounces", "bounces@localhost", "b+x@example.com", "a" * 37 + "@example.com", "ü@example.com"],
)
def test_a_bounce_address_that_cannot_carry_tags_is_one_config_line(
    site: Site, address: str
) -> None:
    site.write_config(digest={"bounce_address": address})
    site.post("2025-01-01-a.md", "title: A")
    result = site.run("check")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "digest.bounce_address:" in line and "Traceback" not in result.stderr

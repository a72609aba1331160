"""Provider webhooks end to end: real HTTP calls to the real ``publisher serve``, which
suppresses the addresses of authenticated bounce and complaint events, and of no others."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from publisher.mail.verp import return_path
from publisher.store import Store
from tests.conftest import Site
from tests.web_server import ServeProcess

SECRET = "webhook test secret"
MAILGUN_KEY = "key-mailgun-signing"
POSTMARK = "postmark-basic-secret"
ENV = {
    "PUBLISHER_SECRET": SECRET,
    "PUBLISHER_MAILGUN_WEBHOOK_KEY": MAILGUN_KEY,
    "PUBLISHER_POSTMARK_WEBHOOK_SECRET": POSTMARK,
}
JOINED = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def mail_site(site: Site) -> Site:
    site.write_config(
        digest={"from": "News <news@example.com>", "bounce_address": "bounces@example.com"}
    )
    return site


@pytest.fixture
def hooked(mail_site: Site) -> Iterator[tuple[Site, httpx.Client]]:
    site = mail_site
    site.post("2026-11-02-a.md", "title: A")
    with Store.open(site.config()) as store:
        for name in ("ann", "bob", "cho", "dan"):
            store.add_subscriber(f"{name}@example.net", now=JOINED)
        row = store.plan_send("2026-W45", 1, ["a"], "<m@x>", now=JOINED)
        assert row.email == "ann@example.net"
    with ServeProcess(site.root, env=ENV) as server, httpx.Client(base_url=server.url) as http:
        yield site, http


def mailgun_body(
    event: dict[str, Any], *, key: str = MAILGUN_KEY, age: int = 0, token: str = ""
) -> str:
    timestamp = str(int(time.time()) - age)
    token = token or hashlib.sha256(json.dumps(event).encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        }
    )


def statuses(site: Site) -> dict[str, str]:
    with Store.open(site.config()) as store:
        return {s.email: s.status for s in store.list_subscribers()}


def test_mailgun_events_are_checked_then_suppress_by_return_path(
    hooked: tuple[Site, httpx.Client],
) -> None:
    site, http = hooked
    # Ann's message (ledger row 1) bounced; the event names an alias, the envelope her row.
    failed = {
        "event": "failed",
        "severity": "permanent",
        "recipient": "alias@forward.example.org",
        "envelope": {"sender": return_path(SECRET.encode(), "bounces@example.com", 1)},
        "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist"},
    }
    body = mailgun_body(failed)
    # Unauthenticated, stale, malformed: 4xx, and nothing changes.
    assert (
        http.post("/webhooks/mailgun", content=mailgun_body(failed, key="wrong")).status_code == 401
    )
    assert http.post("/webhooks/mailgun", content=mailgun_body(failed, age=3600)).status_code == 401
    assert http.post("/webhooks/mailgun", content=b"{not json").status_code == 400
    assert set(statuses(site).values()) == {"active"}

    assert http.post("/webhooks/mailgun", content=body).status_code == 200
    assert http.post("/webhooks/mailgun", content=body).status_code == 409  # replayed
    complained = {"event": "complained", "recipient": "bob@example.net"}
    assert http.post("/webhooks/mailgun", content=mailgun_body(complained)).status_code == 200
    soft = {
        "event": "failed",
        "severity": "temporary",
        "recipient": "cho@example.net",
        "delivery-status": {"code": 452, "message": "mailbox full"},
    }
    assert http.post("/webhooks/mailgun", content=mailgun_body(soft)).status_code == 200
    delivered = {"event": "delivered", "recipient": "dan@example.net"}
    assert http.post("/webhooks/mailgun", content=mailgun_body(delivered)).status_code == 200
    assert statuses(site) == {
        "ann@example.net": "bounced",
        "bob@example.net": "complained",
        "cho@example.net": "active",  # one soft bounce of three
        "dan@example.net": "active",
    }
    with Store.open(site.config()) as store:
        ann = store.suppression("ann@example.net")
        assert ann is not None and ann.reason == "550 5.1.1 The email account does not exist"
        assert store.bounce_counts("2026-W45") == {"hard": 1, "soft": 0, "complaint": 0}


def basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"postmark:{secret}".encode()).decode()}


def test_postmark_events_need_the_basic_auth_secret_and_are_taken_once(
    hooked: tuple[Site, httpx.Client],
) -> None:
    site, http = hooked
    bounce = {
        "RecordType": "Bounce",
        "ID": 42,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Email": "dan@example.net",
        "Details": "smtp;550 5.1.1 unknown user",
    }
    assert http.post("/webhooks/postmark", json=bounce).status_code == 401
    assert http.post("/webhooks/postmark", json=bounce, headers=basic("wrong")).status_code == 401
    assert (
        http.post("/webhooks/postmark", content=b"[]", headers=basic(POSTMARK)).status_code == 400
    )
    assert statuses(site)["dan@example.net"] == "active"
    assert http.post("/webhooks/postmark", json=bounce, headers=basic(POSTMARK)).status_code == 200
    assert http.post("/webhooks/postmark", json=bounce, headers=basic(POSTMARK)).status_code == 409
    spam = {"RecordType": "SpamComplaint", "ID": 43, "Email": "cho@example.net"}
    assert http.post("/webhooks/postmark", json=spam, headers=basic(POSTMARK)).status_code == 200
    assert statuses(site)["dan@example.net"] == "bounced"
    assert statuses(site)["cho@example.net"] == "complained"


def test_a_webhook_without_its_secret_is_not_there(mail_site: Site) -> None:
    with ServeProcess(mail_site.root, env={"PUBLISHER_SECRET": SECRET}) as server:
        answer = httpx.post(server.url + "/webhooks/mailgun", content=b"{}")
    assert answer.status_code == 404

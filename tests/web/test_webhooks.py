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


# --- Amazon SES through SNS: the app in a thread, only the certificate download injected ----

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"


def _certificate() -> tuple[Any, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def _signed(key: Any, fields: dict[str, str], version: str = "2") -> dict[str, str]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    order = (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Subject",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    )
    text = "".join(f"{k}\n{fields[k]}\n" for k in order if k in fields)
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    signature = key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {
        **fields,
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "Signature": base64.b64encode(signature).decode(),
    }


def _notification(message: dict[str, Any], message_id: str) -> dict[str, str]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(message),
        "Timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


def test_ses_notifications_through_sns_are_taken_only_with_a_good_signature(
    mail_site: Site,
) -> None:
    from publisher.web import serve_in_thread

    mail_site.write_config(webhooks={"ses_topic_arns": [TOPIC]})
    with Store.open(mail_site.config()) as store:
        for name in ("ann", "bob", "eve"):
            store.add_subscriber(f"{name}@example.net", now=JOINED)
    key, pem = _certificate()
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return pem if url == CERT_URL else b"confirmed"

    handle = serve_in_thread(
        mail_site.config(), secret=SECRET.encode(), host="127.0.0.1", port=0, fetch=fetch
    )
    try:
        http = httpx.Client(base_url=handle.url)
        bounce = {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bouncedRecipients": [
                    {
                        "emailAddress": "ann@example.net",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
            },
            "mail": {"source": "news@example.com"},
        }
        good = _signed(key, _notification(bounce, "m-1"))
        # A changed byte, another key, a certificate off SNS, another topic: refused.
        tampered = {**good, "Message": good["Message"].replace("ann@", "bob@")}
        assert http.post("/webhooks/ses", json=tampered).status_code == 401
        other_key, _ = _certificate()
        assert (
            http.post(
                "/webhooks/ses", json=_signed(other_key, _notification(bounce, "m-2"))
            ).status_code
            == 401
        )
        off_sns = {**good, "SigningCertURL": "https://evil.example.com/cert.pem"}
        assert http.post("/webhooks/ses", json=off_sns).status_code == 401
        elsewhere = _signed(key, {**_notification(bounce, "m-3"), "TopicArn": TOPIC + "-other"})
        assert http.post("/webhooks/ses", json=elsewhere).status_code == 403
        assert set(statuses(mail_site).values()) == {"active"}

        assert http.post("/webhooks/ses", json=good).status_code == 200
        assert http.post("/webhooks/ses", json=good).status_code == 409  # replayed
        complaint = {
            "notificationType": "Complaint",
            "complaint": {
                "complaintFeedbackType": "abuse",
                "complainedRecipients": [{"emailAddress": "bob@example.net"}],
            },
            "mail": {"source": "news@example.com"},
        }
        signed = _signed(key, _notification(complaint, "m-4"), version="1")  # SHA1withRSA too
        assert http.post("/webhooks/ses", json=signed).status_code == 200
        confirm = _signed(
            key,
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "m-5",
                "TopicArn": TOPIC,
                "Token": "tok",
                "Message": "You have chosen to subscribe",
                "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=tok",
                "Timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            },
        )
        assert http.post("/webhooks/ses", json=confirm).status_code == 200
        http.close()
    finally:
        handle.stop()
    assert statuses(mail_site) == {
        "ann@example.net": "bounced",
        "bob@example.net": "complained",
        "eve@example.net": "active",
    }
    assert fetched.count(CERT_URL) == 1  # fetched once, then kept
    assert fetched[-1].startswith("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")

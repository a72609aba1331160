"""Bounce and complaint webhooks of mail providers: Mailgun, Postmark, Amazon SES (SNS).

``POST /webhooks/mailgun`` takes Mailgun's event webhook (JSON), whose
``signature`` is an HMAC-SHA256 of its timestamp and token with the account's
webhook signing key (from the environment variable named by
``webhooks.mailgun_key_env``); a call more than 15 minutes old, or whose token
was seen before, is refused. ``POST /webhooks/postmark`` takes Postmark's bounce
and spam-complaint webhooks, authenticated by HTTP basic auth with the secret in
``webhooks.postmark_secret_env`` (Postmark sends credentials put in the webhook
URL); an event id seen before is refused. A route whose secret is not set
answers 404. Unauthenticated calls get 401, replays 409, malformed ones 400,
and none of them changes anything; a good one is applied as
:func:`publisher.digest.bounces.apply_bounce` applies any bounce. ``POST
/webhooks/ses`` takes SNS notifications of the topics in
``webhooks.ses_topic_arns``, each signature checked with the certificate SNS
names (see :func:`verify_sns`).

The readers (:func:`mailgun_events`, :func:`postmark_events`, :func:`ses_events`)
and :func:`verify_sns` (given a fetch) do no I/O of their own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from publisher.config import secret_from_env
from publisher.web.context import WebContext

__all__ = [
    "Rejected",
    "WebhookEvent",
    "Webhooks",
    "mailgun_events",
    "postmark_events",
    "ses_events",
    "verify_sns",
]

#: How old a signed Mailgun call may be (Mailgun's own advice: a few minutes).
MAX_AGE_SECONDS = 15 * 60


class Rejected(Exception):
    """A webhook call that changes nothing: its HTTP status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class WebhookEvent:
    """One bounce or complaint a provider reported."""

    replay_key: str  # refused when seen again
    kind: str  # "hard" | "soft" | "complaint"
    recipient: str
    reason: str
    return_paths: tuple[str, ...]  # the envelope sender, when the provider says it


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(400, "not JSON") from None
    if not isinstance(data, dict):
        raise Rejected(400, "not a JSON object")
    return data


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def mailgun_events(key: bytes, body: bytes, now: datetime) -> list[WebhookEvent]:
    """The bounce or complaint in a Mailgun webhook call; [] for other events."""
    data = _json(body)
    signature = data.get("signature")
    if not isinstance(signature, dict):
        raise Rejected(401, "no signature")
    timestamp, token, given = (
        str(signature.get(k, "")) for k in ("timestamp", "token", "signature")
    )
    expected = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not token or not hmac.compare_digest(expected, given.lower()):
        raise Rejected(401, "bad signature")
    try:
        age = now.timestamp() - int(timestamp)
    except ValueError:
        raise Rejected(401, "bad timestamp") from None
    if abs(age) > MAX_AGE_SECONDS:
        raise Rejected(401, "signature too old")
    event = data.get("event-data")
    if not isinstance(event, dict):
        raise Rejected(400, "no event-data")
    name = event.get("event")
    recipient = str(event.get("recipient", ""))
    envelope = _mapping(event.get("envelope"))
    paths = tuple(p for p in [str(envelope.get("sender", ""))] if "@" in p)
    replay = f"mailgun:{token}"
    if name == "complained":
        return [WebhookEvent(replay, "complaint", recipient, "complaint: mailgun", paths)]
    if name != "failed":
        return []
    status = _mapping(event.get("delivery-status"))
    code = status.get("code", "")
    message = " ".join(str(status.get("message") or status.get("description") or "").split())
    kind = "hard" if event.get("severity") == "permanent" else "soft"
    return [WebhookEvent(replay, kind, recipient, f"{code} {message}".strip(), paths)]


# Postmark's bounce types that are a dead address (the rest are soft or not about it).
_POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Unsubscribe"}
_POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "AutoResponder"}


def postmark_events(secret: str, authorization: str, body: bytes) -> list[WebhookEvent]:
    """The bounce or complaint in a Postmark webhook call; [] for other records."""
    scheme, _, encoded = authorization.partition(" ")
    try:
        _user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Rejected(401, "no basic auth") from None
    if scheme.lower() != "basic" or not hmac.compare_digest(password, secret):
        raise Rejected(401, "bad credentials")
    data = _json(body)
    record = data.get("RecordType")
    email = str(data.get("Email", ""))
    event_id = data.get("ID")
    if event_id is None or not email:
        raise Rejected(400, "no ID or Email")
    replay = f"postmark:{record}:{event_id}"
    if record == "SpamComplaint":
        return [WebhookEvent(replay, "complaint", email, "complaint: postmark", ())]
    if record != "Bounce":
        return []
    kind_name = str(data.get("Type", ""))
    if kind_name in _POSTMARK_HARD:
        kind = "hard"
    elif kind_name in _POSTMARK_SOFT:
        kind = "soft"
    else:
        return []
    reason = " ".join(
        f"{kind_name}: {data.get('Details') or data.get('Description') or ''}".split()
    )
    return [WebhookEvent(replay, kind, email, reason, ())]


def _fetch(url: str) -> bytes:
    """GET ``url`` (an https SNS URL, checked by the caller); OSError when it fails."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=5.0) as response:
        data: bytes = response.read(1_000_000)
    return data


class Webhooks:
    """The webhook routes of one app."""

    def __init__(
        self, web: WebContext, clock: Callable[[], datetime], fetch: Fetch | None = None
    ) -> None:
        self.web = web
        self.clock = clock
        hooks = web.config.webhooks
        self.mailgun_key = secret_from_env(hooks.mailgun_key_env)
        self.postmark_secret = secret_from_env(hooks.postmark_secret_env)
        self.ses_topics = frozenset(hooks.ses_topic_arns)
        self.fetch = fetch or _fetch
        self._certificates: dict[str, bytes] = {}

    async def ses(self, request: Request) -> Response:
        if not self.ses_topics:
            return PlainTextResponse("not found", status_code=404)
        body = await request.body()
        return await run_in_threadpool(self._ses, body)

    def _cached_fetch(self, url: str) -> bytes:
        # A certificate is fetched once per process; SNS rotates them by URL.
        if url not in self._certificates:
            self._certificates[url] = self.fetch(url)
        return self._certificates[url]

    def _ses(self, body: bytes) -> Response:
        try:
            data = _json(body)
            if data.get("TopicArn") not in self.ses_topics:
                raise Rejected(403, "topic not in webhooks.ses_topic_arns")
            verify_sns(data, self._cached_fetch, self.clock())
            if data.get("Type") == "SubscriptionConfirmation":
                url = str(data.get("SubscribeURL", ""))
                if not sns_url_ok(url):
                    raise Rejected(400, "SubscribeURL not on an SNS host")
                self.fetch(url)  # confirms the subscription
                return PlainTextResponse("subscribed")
            events = ses_events(data)
        except Rejected as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        except OSError as exc:
            return PlainTextResponse(f"cannot fetch: {exc}", status_code=502)
        return self._apply(events)

    async def mailgun(self, request: Request) -> Response:
        if self.mailgun_key is None:
            return PlainTextResponse("not found", status_code=404)
        key = self.mailgun_key.encode()
        body = await request.body()
        return await self._take(lambda: mailgun_events(key, body, self.clock()))

    async def postmark(self, request: Request) -> Response:
        if self.postmark_secret is None:
            return PlainTextResponse("not found", status_code=404)
        secret = self.postmark_secret
        auth = request.headers.get("authorization", "")
        body = await request.body()
        return await self._take(lambda: postmark_events(secret, auth, body))

    async def _take(self, read: Callable[[], list[WebhookEvent]]) -> Response:
        try:
            events = read()
        except Rejected as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        return await run_in_threadpool(self._apply, events)

    def _apply(self, events: list[WebhookEvent]) -> Response:
        from publisher.digest.bounces import apply_bounce

        store = self.web.subs.store
        now = self.clock()
        keys = list(dict.fromkeys(event.replay_key for event in events))
        if any(store.seen(key) for key in keys):
            return PlainTextResponse("replayed", status_code=409)
        # Applied, then recorded: a failure in between makes the provider's retry
        # apply it again (harmless for a suppression), never lose it.
        for event in events:
            apply_bounce(
                self.web.config,
                store,
                self.web.secret,
                kind=event.kind,
                recipient=event.recipient,
                reason=event.reason,
                return_paths=event.return_paths,
                now=now,
            )
        for key in keys:
            store.first_seen(key, now=now)
        return PlainTextResponse("ok")


# --- Amazon SES, through SNS ----------------------------------------------------------------

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?$")
#: How old an SNS message may be when it arrives (SNS retries for up to an hour).
SNS_MAX_AGE_SECONDS = 3600
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}

#: Fetches a URL's bytes (the signing certificate; the subscription confirmation).
Fetch = Callable[[str], bytes]


def sns_url_ok(url: str) -> bool:
    """Whether ``url`` is an https URL on an SNS host (never anyone else's certificate)."""
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or ""))


def verify_sns(data: dict[str, Any], fetch: Fetch, now: datetime) -> None:
    """Check an SNS message's signature with the certificate it names; Rejected if bad."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    kind = data.get("Type")
    fields = _SIGNED_FIELDS.get(str(kind))
    if fields is None:
        raise Rejected(400, f"SNS message type {kind!r} not taken")
    cert_url = str(data.get("SigningCertURL", ""))
    if not sns_url_ok(cert_url) or not cert_url.endswith(".pem"):
        raise Rejected(401, "signing certificate not on an SNS host")
    version = str(data.get("SignatureVersion", ""))
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()  # SNS's SignatureVersion 1 is SHA1withRSA
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise Rejected(401, "unknown SignatureVersion")
    text = "".join(
        f"{name}\n{data[name]}\n" for name in fields if name in data and data[name] is not None
    )
    try:
        signature = base64.b64decode(str(data.get("Signature", "")), validate=True)
        certificate = x509.load_pem_x509_certificate(fetch(cert_url))
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Rejected(401, "signing certificate without an RSA key")
        key.verify(signature, text.encode("utf-8"), padding.PKCS1v15(), algorithm)
    except (binascii.Error, ValueError, InvalidSignature):
        raise Rejected(401, "bad SNS signature") from None
    try:
        sent = datetime.fromisoformat(str(data.get("Timestamp", "")).replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(400, "bad Timestamp") from None
    if abs(now.timestamp() - sent.timestamp()) > SNS_MAX_AGE_SECONDS:
        raise Rejected(401, "SNS message too old")


def ses_events(data: dict[str, Any]) -> list[WebhookEvent]:
    """The bounces and complaints of a verified SES notification (its ``Message``)."""
    try:
        message = json.loads(str(data.get("Message", "")))
    except ValueError:
        raise Rejected(400, "Message is not JSON") from None
    if not isinstance(message, dict):
        raise Rejected(400, "Message is not a JSON object")
    replay = f"ses:{data.get('MessageId', '')}"
    mail = _mapping(message.get("mail"))
    paths = tuple(p for p in [str(mail.get("source", ""))] if "@" in p)
    kind_name = message.get("notificationType") or message.get("eventType")
    events = []
    if kind_name == "Bounce":
        bounce = _mapping(message.get("bounce"))
        kind = "hard" if bounce.get("bounceType") == "Permanent" else "soft"
        for person in bounce.get("bouncedRecipients") or []:
            person = _mapping(person)
            reason = " ".join(
                str(person.get("diagnosticCode") or bounce.get("bounceSubType")).split()
            )
            events.append(
                WebhookEvent(replay, kind, str(person.get("emailAddress", "")), reason, paths)
            )
    elif kind_name == "Complaint":
        complaint = _mapping(message.get("complaint"))
        feedback = complaint.get("complaintFeedbackType") or "abuse"
        for person in complaint.get("complainedRecipients") or []:
            person = _mapping(person)
            events.append(
                WebhookEvent(
                    replay,
                    "complaint",
                    str(person.get("emailAddress", "")),
                    f"complaint: {feedback}",
                    paths,
                )
            )
    return events

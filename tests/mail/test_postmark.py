"""The Postmark backend against a real HTTP server on 127.0.0.1, and its rate limiter.

The server is :class:`tests.mail.fake_postmark.FakePostmark`; the client is the
backend's own httpx client, unpatched. Waiting is an injected sleep that only
records how long the backend asked to wait.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from publisher.errors import (
    PermanentSendError,
    SendError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail.base import Backend
from publisher.mail.postmark import (
    BatchStopped,
    Outcome,
    PostmarkBackend,
    outcome_of,
    postmark_message,
    retry_after,
)
from publisher.mail.prepared import PreparedMessage
from publisher.mail.ratelimit import LocalRateLimiter, RateLimiter
from tests.mail.fake_postmark import Accepted, FakePostmark

TOKEN = "server-token"
UNSUBSCRIBE = (
    "<https://example.com/unsubscribe/eyJzIjoxMjM0NTY3ODkwLCJwIjoidW5zdWJzY3JpYmUifQ.sig>,"
    " <mailto:unsubscribe@example.com?subject=unsubscribe>"
)


def message(
    to: str,
    *,
    subject: str = "今週のまとめ",
    message_id: str | None = None,
    sender: str = "山田 太郎 <news@example.com>",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.com>"
    msg["List-Unsubscribe"] = UNSUBSCRIBE
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content("こんにちは。\n今週の記事です。\n")
    msg.add_alternative("<p>こんにちは。</p>\n<p>今週の記事です。</p>\n", subtype="html")
    return msg


class Sleeps(list[float]):
    """An injected sleep: records each wait, waits for none."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def server() -> Iterator[FakePostmark]:
    with FakePostmark(TOKEN) as fake:
        yield fake


def backend_for(fake: FakePostmark, sleeps: Sleeps, **options: object) -> PostmarkBackend:
    settings: dict[str, object] = {"base_url": fake.url, "backoff": 0.01, "sleep": sleeps}
    settings.update(options)
    return PostmarkBackend(TOKEN, **settings)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- messages to JSON -----------------------------------------------------------------------


def test_a_japanese_message_becomes_postmark_json_in_unicode() -> None:
    msg = message('"佐藤, 花子" <hanako@example.jp>', message_id="<w49.1@example.com>")
    msg["Reply-To"] = "編集部 <editors@example.com>"
    msg["Date"] = "Mon, 01 Dec 2025 09:00:00 +0900"
    msg["X-Campaign"] = "2025-W49"

    assert postmark_message(msg, message_stream="broadcast") == {
        "From": "山田 太郎 <news@example.com>",
        "To": '"佐藤, 花子" <hanako@example.jp>',
        "Subject": "今週のまとめ",
        "ReplyTo": "編集部 <editors@example.com>",
        "TextBody": "こんにちは。\n今週の記事です。\n",
        "HtmlBody": "<p>こんにちは。</p>\n<p>今週の記事です。</p>\n",
        "Headers": [
            {"Name": "Message-ID", "Value": "<w49.1@example.com>"},
            {"Name": "List-Unsubscribe", "Value": UNSUBSCRIBE},
            {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"},
            {"Name": "X-Campaign", "Value": "2025-W49"},
        ],
        "MessageStream": "broadcast",
    }


def prepared_digest(to: str) -> PreparedMessage:
    """A digest as the project builds its bytes: encoded words, 8-bit parts, folded by hand."""
    head = (
        "From: =?utf-8?b?5bGx55SwIOWkqumDjg==?= <news@example.com>\r\n"
        f"To: =?utf-8?b?5L2Q6Jek?= <{to}>\r\n"
        "Subject: =?utf-8?b?5LuK6YCx44Gu44G+44Go44KB?=\r\n"
        "Date: Mon, 01 Dec 2025 09:00:00 +0900\r\n"
        "Message-ID: <w49.1@example.com>\r\n"
        "List-ID: Example <news.example.com>\r\n"
        "List-Unsubscribe: <https://example.com/unsubscribe/eyJzIjoxMjM0NTY3ODkwLCJwIjoidW5"
        "zdWJzY3JpYmUifQ.sig>,\r\n <mailto:unsubscribe@example.com?subject=unsubscribe>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative;\r\n boundary="=_b"\r\n'
        "\r\n--=_b\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
        "こんにちは。\r\n今週の記事です。\r\n"
        "\r\n--=_b\r\n"
        'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
        "<p>こんにちは。</p>\r\n<p>今週の記事です。</p>\r\n"
        "\r\n--=_b--\r\n"
    )
    return PreparedMessage("bounce+1@example.com", (to,), "<w49.1@example.com>", head.encode())


def test_a_prepared_message_and_an_email_message_give_the_same_json() -> None:
    msg = message("佐藤 <sato@example.jp>", message_id="<w49.1@example.com>")
    msg["List-ID"] = "Example <news.example.com>"
    # The same order as the prepared message's headers.
    post = msg["List-Unsubscribe-Post"]
    unsubscribe = msg["List-Unsubscribe"]
    del msg["List-Unsubscribe"], msg["List-Unsubscribe-Post"]
    msg["List-Unsubscribe"], msg["List-Unsubscribe-Post"] = unsubscribe, post

    from_prepared = postmark_message(prepared_digest("sato@example.jp"), message_stream="b")
    assert from_prepared == postmark_message(msg, message_stream="b")
    assert from_prepared["Subject"] == "今週のまとめ"
    assert from_prepared["To"] == "佐藤 <sato@example.jp>"
    assert {"Name": "List-Unsubscribe", "Value": UNSUBSCRIBE} in from_prepared["Headers"]
    assert "Bcc" not in from_prepared  # the envelope recipient is the To


def test_envelope_recipients_not_in_the_headers_go_in_bcc() -> None:
    prepared = prepared_digest("sato@example.jp")
    prepared = PreparedMessage(
        prepared.sender, ("sato@example.jp", "archive@example.com"), "<x@y>", prepared.eight_bit
    )
    assert postmark_message(prepared, message_stream="b")["Bcc"] == "archive@example.com"


def test_a_message_postmark_could_never_take_is_refused_before_sending() -> None:
    no_body = EmailMessage()
    no_body["From"] = "news@example.com"
    no_body["To"] = "ann@example.com"
    with pytest.raises(PermanentSendError, match="no text or HTML body"):
        postmark_message(no_body, message_stream="b")
    del no_body["To"]
    no_body.set_content("hello")
    with pytest.raises(PermanentSendError, match="no recipient"):
        postmark_message(no_body, message_stream="b")


# --- answers to outcomes --------------------------------------------------------------------


def test_each_result_code_means_an_outcome() -> None:
    assert outcome_of({"ErrorCode": 0, "MessageID": "b7bc2f4a", "Message": "OK"}) == Outcome(
        "sent", provider_id="b7bc2f4a"
    )
    inactive = outcome_of({"ErrorCode": 406, "Message": "Inactive.\n Found: a@example.com"})
    # Postmark will never send to it again: the address is to be suppressed here too.
    assert inactive == Outcome(
        "failed", error="postmark 406: Inactive. Found: a@example.com", code=406, gone=True
    )
    illegal = outcome_of({"ErrorCode": 300, "Message": "Illegal email address 'x'"})
    assert (illegal.status, illegal.gone) == ("failed", False)
    # The From address is the account's problem: no reader's address is to blame.
    unverified = {"ErrorCode": 300, "Message": "Invalid 'From' address: 'a@b.c' is not verified"}
    assert outcome_of(unverified).status == "retry"
    assert outcome_of({"ErrorCode": 405, "Message": "Not allowed to send"}).status == "retry"
    assert outcome_of({"Message": "?"}).status == "uncertain"


def test_retry_after_is_read_in_seconds_or_as_a_date() -> None:
    now = datetime(2025, 12, 1, 9, 0, 0, tzinfo=UTC)
    assert retry_after("7", now=now) == 7.0
    assert retry_after("Mon, 01 Dec 2025 09:00:30 GMT", now=now) == 30.0
    assert retry_after("Mon, 01 Dec 2025 08:00:00 GMT", now=now) == 0.0
    assert retry_after("soon", now=now) is None
    assert retry_after(None, now=now) is None


# --- sending --------------------------------------------------------------------------------


def test_1234_messages_through_throttling_and_an_outage_each_arrive_once(
    sleeps: Sleeps,
) -> None:
    recipients = [f"reader{i:04d}@example.com" for i in range(1234)]
    inactive = {recipients[7], recipients[640]}
    recipients[99] = "no-at-sign"
    acquired: list[int] = []

    class Counting:
        def acquire(self, n: int = 1) -> None:
            acquired.append(n)

    # 503 for the first request; after 2 accepted requests, 429 twice.
    with FakePostmark(TOKEN, unavailable={1}, throttle_after=2, throttle_for=2) as fake:
        fake.inactive = inactive
        with backend_for(fake, sleeps, limiter=Counting()) as backend:
            outcomes = backend.send_batch([prepared_digest(r) for r in recipients])

    assert len(outcomes) == len(recipients)
    assert max(r.messages for r in fake.requests) <= 500
    assert [r.status for r in fake.requests] == [503, 200, 200, 429, 429, 200]
    assert acquired == [500, 500, 500, 234, 234, 234]  # every attempt asks the limiter
    assert sleeps == [0.01, 0.01, 0.02]
    copies: dict[str, list[Accepted]] = {}
    for accepted in fake.accepted:
        for address in accepted.recipients:
            copies.setdefault(address, []).append(accepted)
    for recipient, outcome in zip(recipients, outcomes, strict=True):
        received = copies.get(recipient, [])
        if outcome.status == "sent":
            [copy] = received  # exactly once
            assert outcome.provider_id == copy.message_id
            assert copy.message["MessageStream"] == "broadcast"
        else:
            assert received == []
            assert outcome.status in ("failed", "retry", "uncertain")
    assert [o.status for o in outcomes].count("sent") == len(fake.accepted) == 1231
    assert {recipients[i] for i, o in enumerate(outcomes) if o.status == "failed"} == {
        "no-at-sign",
        *inactive,
    }
    assert {(r.headers["accept"], r.headers["content-type"]) for r in fake.requests} == {
        ("application/json", "application/json")
    }


def test_invalid_and_inactive_addresses_fail_with_one_line_errors(
    server: FakePostmark, sleeps: Sleeps
) -> None:
    server.inactive = {"gone@example.com"}
    server.codes = {"later@example.com": (429, "Rate limit exceeded for this recipient")}
    with backend_for(server, sleeps) as backend:
        bad, gone, ok, later = backend.send_batch(
            [
                message("Ann <ann@@example.com>"),
                message("gone@example.com"),
                message("ok@example.com"),
                message("later@example.com"),
            ]
        )
    assert bad.status == "failed" and bad.code == 300
    assert bad.error.startswith("postmark 300: Error parsing 'To': Illegal email address")
    assert gone.status == "failed" and gone.code == 406
    assert gone.error.startswith("postmark 406: You tried to send to recipient(s) that have")
    assert "gone@example.com" in gone.error
    assert "\n" not in bad.error + gone.error
    assert ok.status == "sent" and [a.message_id for a in server.accepted] == [ok.provider_id]
    assert later == Outcome(
        "retry", error="postmark 429: Rate limit exceeded for this recipient", code=429
    )


def test_a_from_address_the_account_cannot_use_fails_no_reader(sleeps: Sleeps) -> None:
    with (
        FakePostmark(TOKEN, senders={"news@example.com"}) as fake,
        backend_for(fake, sleeps) as backend,
    ):
        [outcome] = backend.send_batch([message("ann@example.com", sender="x@example.org")])
    assert outcome.status == "retry"
    assert "not a verified sender signature" in outcome.error


def test_a_timeout_after_the_server_took_the_batch_is_uncertain_and_not_retried(
    sleeps: Sleeps,
) -> None:
    with FakePostmark(TOKEN, hang={1}) as fake:
        started = time.monotonic()
        with backend_for(fake, sleeps, timeout=0.5, batch_size=2) as backend:
            outcomes = backend.send_batch([message(f"r{i}@example.com") for i in range(3)])
        took = time.monotonic() - started
    first, second, third = outcomes
    assert first.status == second.status == "uncertain"
    assert "ReadTimeout" in first.error and "may have been accepted" in first.error
    assert third.status == "sent"
    # The server took the hanging batch, once: no blind retry.
    assert sorted(a.recipients[0] for a in fake.accepted) == [
        "r0@example.com",
        "r1@example.com",
        "r2@example.com",
    ]
    assert len(fake.requests) == 2 and sleeps == []
    assert took < 3


def test_send_raises_uncertain_for_a_lost_answer(sleeps: Sleeps) -> None:
    with (
        FakePostmark(TOKEN, hang={1}) as fake,
        backend_for(fake, sleeps, timeout=0.2) as backend,
        pytest.raises(UncertainSendError, match="may have been accepted"),
    ):
        backend.send(message("ann@example.com"))
    assert len(fake.to("ann@example.com")) == 1


def test_a_connection_dropped_before_the_answer_is_uncertain(sleeps: Sleeps) -> None:
    with FakePostmark(TOKEN, drop={1}) as fake, backend_for(fake, sleeps) as backend:
        outcomes = backend.send_batch([message("ann@example.com"), message("bob@example.com")])
        assert backend.send_batch([]) == []
    assert {o.status for o in outcomes} == {"uncertain"}
    assert "RemoteProtocolError" in outcomes[0].error
    assert len(fake.accepted) == 2 and len(fake.requests) == 1 and sleeps == []


def test_a_gateway_timeout_is_uncertain(sleeps: Sleeps) -> None:
    with FakePostmark(TOKEN, statuses={1: 504}) as fake, backend_for(fake, sleeps) as backend:
        [outcome] = backend.send_batch([message("ann@example.com")])
    assert outcome.status == "uncertain" and len(fake.requests) == 1


def test_nothing_listening_means_retry_later(sleeps: Sleeps) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with PostmarkBackend(TOKEN, base_url=url, max_retries=2, backoff=0.01, sleep=sleeps) as backend:
        outcomes = backend.send_batch([message("ann@example.com"), message("bob@example.com")])
        assert {o.status for o in outcomes} == {"retry"}
        assert "ConnectError" in outcomes[0].error and "after 3 attempts" in outcomes[0].error
        assert sleeps == [0.01, 0.02]
        with pytest.raises(TemporarySendError, match="cannot reach"):
            backend.send(message("ann@example.com"))


def test_a_bad_token_stops_the_run(server: FakePostmark, sleeps: Sleeps) -> None:
    with PostmarkBackend("wrong", base_url=server.url, sleep=sleeps) as backend:
        with pytest.raises(SendError, match="server token was refused") as raised:
            backend.send_batch([message("ann@example.com")])
        with pytest.raises(SendError, match=r"HTTP 401 \(ErrorCode 10\)"):
            backend.send(message("ann@example.com"))
    assert isinstance(raised.value, BatchStopped)
    assert [o.status for o in raised.value.outcomes] == ["retry"]
    assert server.accepted == [] and sleeps == []


def test_a_stop_midway_keeps_what_was_sent(server: FakePostmark, sleeps: Sleeps) -> None:
    class RevokeOnSecond:
        calls = 0

        def acquire(self, n: int = 1) -> None:
            self.calls += 1
            if self.calls == 2:
                server.token = "revoked"

    messages = [message(f"r{i}@example.com") for i in range(5)]
    with (
        backend_for(server, sleeps, batch_size=2, limiter=RevokeOnSecond()) as backend,
        pytest.raises(BatchStopped) as raised,
    ):
        backend.send_batch(messages)
    outcomes = raised.value.outcomes
    assert [o.status for o in outcomes] == ["sent", "sent", "retry", "retry", "retry"]
    assert [o.provider_id for o in outcomes[:2]] == [a.message_id for a in server.accepted]


def test_a_refused_request_fails_its_messages_or_stops(sleeps: Sleeps) -> None:
    refuse = {
        1: (406, "You tried to send to recipients that have all been marked as inactive."),
        2: (402, "Received invalid JSON input."),
    }
    with FakePostmark(TOKEN, refuse=refuse) as fake, backend_for(fake, sleeps) as backend:
        outcomes = backend.send_batch([message("a@example.com"), message("b@example.com")])
        assert {o.status for o in outcomes} == {"failed"}
        assert outcomes[0].error.startswith("postmark 406: You tried to send")
        with pytest.raises(BatchStopped, match=r"HTTP 422 \(ErrorCode 402\)"):
            backend.send_batch([message("c@example.com")])
    assert fake.accepted == []


def test_throttled_past_the_retries_gives_up_the_rest_of_the_batch(sleeps: Sleeps) -> None:
    with (
        FakePostmark(TOKEN, throttle_after=0, throttle_for=99, retry_after="3") as fake,
        backend_for(fake, sleeps, batch_size=2, max_retries=2) as backend,
    ):
        outcomes = backend.send_batch([message(f"r{i}@example.com") for i in range(5)])
    assert {o.status for o in outcomes} == {"retry"}
    assert "HTTP 429 (ErrorCode 429)" in outcomes[0].error
    assert outcomes[4].error == outcomes[0].error  # not tried: the same throttle
    assert len(fake.requests) == 3  # one request, two retries; the other two never sent
    assert sleeps == [3.0, 3.0]  # Retry-After, not the backoff


def test_a_server_error_is_retried_and_then_sent(sleeps: Sleeps) -> None:
    with FakePostmark(TOKEN, statuses={1: 500, 2: 503}) as fake, backend_for(fake, sleeps) as b:
        b.send(message("ann@example.com"))
        assert b.last_provider_id == fake.accepted[0].message_id
    assert [r.status for r in fake.requests] == [500, 503, 200]
    assert sleeps == [0.01, 0.02]


def test_send_maps_outcomes_to_the_projects_errors(server: FakePostmark, sleeps: Sleeps) -> None:
    server.inactive = {"gone@example.com"}
    with backend_for(server, sleeps) as backend:
        assert isinstance(backend, Backend)
        with pytest.raises(PermanentSendError, match="postmark 406"):
            backend.send(message("gone@example.com"))
        assert backend.last_provider_id == ""
        backend.send(message("ann@example.com"))
    assert backend.last_provider_id == server.to("ann@example.com")[0].message_id


def test_requests_stay_under_the_payload_limit(server: FakePostmark, sleeps: Sleeps) -> None:
    def plain(to: str, text: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "news@example.com", to, "big"
        msg.set_content(text, cte="7bit")
        return msg

    def big(to: str) -> EmailMessage:
        return plain(to, ("x" * 99 + "\n") * 90_000)  # 9 MB in short lines

    too_big = plain("huge@example.com", ("y" * 99 + "\n") * 100_001)
    with backend_for(server, sleeps) as backend:
        outcomes = backend.send_batch([big(f"r{i}@example.com") for i in range(6)] + [too_big])
    assert [o.status for o in outcomes] == ["sent"] * 6 + ["failed"]
    assert "more than Postmark's 10,000,000" in outcomes[6].error
    assert [r.messages for r in server.requests] == [5, 1]  # 6 x 9 MB is over 50 MB


def test_the_token_never_goes_in_clear_to_another_host() -> None:
    with pytest.raises(SendError, match="in clear"):
        PostmarkBackend(TOKEN, base_url="http://api.postmarkapp.com")
    with pytest.raises(SendError, match="empty"):
        PostmarkBackend(" ")
    with pytest.raises(ValueError, match="batch_size"):
        PostmarkBackend(TOKEN, batch_size=501)


# --- the rate limiter -----------------------------------------------------------------------


class FakeTime:
    """A clock that moves only when slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_batch_goes_when_its_last_slot_is_due() -> None:
    fake = FakeTime()
    limiter: RateLimiter = LocalRateLimiter(10, clock=fake.clock, sleep=fake.sleep)
    limiter.acquire(1)  # the first slot is now
    limiter.acquire(5)  # slots 0.1 .. 0.5
    limiter.acquire(5)  # slots 0.6 .. 1.0
    assert fake.slept == pytest.approx([0.5, 0.5])
    fake.now += 60  # an idle minute is not saved up as a burst
    limiter.acquire(3)
    assert fake.slept[2:] == pytest.approx([0.2])


def test_no_rate_means_no_waiting() -> None:
    fake = FakeTime()
    for rate in (0, None):
        limiter = LocalRateLimiter(rate, clock=fake.clock, sleep=fake.sleep)
        limiter.acquire(500)
        limiter.acquire(500)
    assert fake.slept == []
    with pytest.raises(ValueError):
        LocalRateLimiter(-1)


def test_threads_share_one_schedule() -> None:
    slept: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    limiter = LocalRateLimiter(10, clock=lambda: 0.0, sleep=sleep)
    threads = [threading.Thread(target=limiter.acquire) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Ten slots, none given twice: one goes at once, the others wait 0.1 .. 0.9.
    assert sorted(slept) == pytest.approx([i / 10 for i in range(1, 10)])


def test_the_backend_waits_for_the_limiter(server: FakePostmark, sleeps: Sleeps) -> None:
    fake = FakeTime()
    limiter = LocalRateLimiter(100, clock=fake.clock, sleep=fake.sleep)
    with backend_for(server, sleeps, batch_size=50, limiter=limiter) as backend:
        backend.send_batch([message(f"r{i}@example.com") for i in range(120)])
    assert fake.slept == pytest.approx([0.49, 0.5, 0.2])  # 50 + 50 + 20 at 100/s
    assert len(server.accepted) == 120

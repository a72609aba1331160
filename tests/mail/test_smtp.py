"""The SMTP backend against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from publisher.config import SmtpConfig
from publisher.errors import (
    PermanentSendError,
    SendError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail import SmtpBackend, make_backend
from publisher.mail.prepared import PreparedMessage
from tests.conftest import Site
from tests.smtp_server import SmtpServer, free_port, make_certificate

CREDENTIALS = {"PUBLISHER_SMTP_USERNAME": "news", "PUBLISHER_SMTP_PASSWORD": "s3cret"}


def message(to: str, subject: str = "Weekly digest", body: str = "Hello.\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Test Site <news@example.com>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<2026-W49.{to}@example.com>"
    msg.set_content(body)
    return msg


PREPARED_BODY = "こんにちは、8bit の本文です。\r\n.a line that starts with a dot\r\n"


def prepared(to: str) -> PreparedMessage:
    """A message already in bytes: 8bit, with a base64 form for 7-bit servers."""
    head = (
        f"From: news@example.com\r\nTo: {to}\r\nSubject: Prepared\r\n"
        f"Message-ID: <prepared.{to}>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
    )
    body = PREPARED_BODY.encode("utf-8")
    seven = (head + "Content-Transfer-Encoding: base64\r\n\r\n").encode() + base64.encodebytes(
        body
    ).replace(b"\n", b"\r\n")
    return PreparedMessage(
        sender="news@example.com",
        recipients=(to,),
        message_id=f"<prepared.{to}>",
        eight_bit=(head + "Content-Transfer-Encoding: 8bit\r\n\r\n").encode() + body,
        seven_bit=lambda: seven,
    )


class Sleeps(list[float]):
    """A fake sleep that advances a fake clock: nothing in these tests really waits."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def __call__(self, seconds: float) -> None:
        self.append(round(seconds, 6))
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def plain(server: SmtpServer, sleeps: Sleeps, **settings: object) -> SmtpBackend:
    config = SmtpConfig(host=server.host, port=server.port, security="none", **settings)  # type: ignore[arg-type]
    return SmtpBackend(config, sleep=sleeps, clock=sleeps.clock, environ={})


# --- delivery -----------------------------------------------------------------------------


def test_many_messages_travel_over_one_connection(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    tricky = "Line one\n.\n..two dots\n.starts with a dot\n"
    with plain(smtp_server, sleeps) as backend:
        for name in ("ann", "bob", "carol"):
            backend.send(message(f"{name}@example.com", body=tricky))
    received = smtp_server.messages
    assert [m.rcpt_tos for m in received] == [
        ("ann@example.com",),
        ("bob@example.com",),
        ("carol@example.com",),
    ]
    assert all(m.mail_from == "news@example.com" for m in received)
    assert received[0].message["Subject"] == "Weekly digest"
    assert received[0].message.get_content() == tricky  # dot-stuffing undone exactly
    assert (smtp_server.connections, backend.connections) == (1, 1)
    assert sleeps == []


def test_an_address_with_a_quoted_local_part_goes_through_as_smtplib_sends_it(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    with plain(smtp_server, sleeps) as backend:
        backend.send(message('"ann lee"@example.com'))
        backend.send(prepared("bob@example.com"))
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ('"ann lee"@example.com',),
        ("bob@example.com",),
    ]


def test_bcc_is_envelope_only(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    msg = message("ann@example.com")
    msg["Bcc"] = "archive@example.com"
    with plain(smtp_server, sleeps) as backend:
        backend.send(msg)
    [received] = smtp_server.messages
    assert received.rcpt_tos == ("ann@example.com", "archive@example.com")
    assert "Bcc" not in received.message
    assert msg["Bcc"] == "archive@example.com"  # the caller's message is untouched


def test_a_connection_closed_by_the_server_between_messages_is_reopened(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    smtp_server.messages_per_connection = 1
    with plain(smtp_server, sleeps) as backend:
        for name in ("ann", "bob", "carol"):
            backend.send(message(f"{name}@example.com"))
    assert len(smtp_server.messages) == 3
    assert smtp_server.connections == backend.connections == 3
    assert sleeps == []  # a normal reconnect, not a failure with backoff


def test_a_prepared_message_travels_8bit_to_a_server_that_announces_8bitmime(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    message = prepared("ann@example.com")
    with plain(smtp_server, sleeps) as backend:
        backend.send(message)
    [received] = smtp_server.messages
    assert received.mail_options == ("BODY=8BITMIME",)
    assert received.data == message.eight_bit  # byte for byte, dots unstuffed again
    assert received.message["Content-Transfer-Encoding"] == "8bit"
    assert received.message.get_content() == PREPARED_BODY.replace("\r\n", "\n")
    assert (received.mail_from, received.rcpt_tos) == ("news@example.com", ("ann@example.com",))


def test_a_server_without_8bitmime_gets_the_7bit_form() -> None:
    sleeps = Sleeps()
    with SmtpServer(eight_bit_mime=False) as server, plain(server, sleeps) as backend:
        backend.send(prepared("ann@example.com"))
        backend.send(message("bob@example.com"))  # an ASCII EmailMessage: as it is
        received = server.messages
    assert [r.mail_options for r in received] == [(), ()]
    assert all(r.data.isascii() for r in received)
    assert received[0].message["Content-Transfer-Encoding"] == "base64"
    assert received[0].message.get_content() == PREPARED_BODY  # canonical CRLF inside base64


def test_each_sending_thread_has_a_connection_of_its_own(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    names = [f"s{i}@example.com" for i in range(20)]
    start = threading.Barrier(2)

    def send(mine: list[str]) -> None:
        start.wait()
        for name in mine:
            backend.send(prepared(name))

    with plain(smtp_server, sleeps, connections=2) as backend:
        assert backend.concurrency == 2
        helper = threading.Thread(target=send, args=(names[1::2],))
        helper.start()
        send(names[::2])  # this thread opened its connection on entering the backend
        helper.join(timeout=30)
    assert sorted(r for m in smtp_server.messages for r in m.rcpt_tos) == sorted(names)
    # Two threads, ten messages each: one connection each, kept for all ten.
    assert smtp_server.connections == backend.connections == 2


# --- temporary failures: retried with backoff ---------------------------------------------


def test_451_is_retried_with_backoff(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    smtp_server.behave("451", times=2)
    with plain(smtp_server, sleeps, max_retries=3) as backend:
        backend.send(message("ann@example.com"))
    assert [m.rcpt_tos for m in smtp_server.messages] == [("ann@example.com",)]
    assert sleeps == [1.0, 2.0]
    assert backend.connections == 1  # the transaction was reset, the connection kept


def test_421_closes_the_connection_and_the_retry_opens_another(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    smtp_server.behave("421", times=1)
    with plain(smtp_server, sleeps) as backend:
        backend.send(message("ann@example.com"))
    assert len(smtp_server.messages) == 1
    assert sleeps == [1.0]
    assert smtp_server.connections == 2


def test_451_at_the_end_of_data_is_retried(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    smtp_server.behave("451-data", times=1)
    with plain(smtp_server, sleeps) as backend:
        backend.send(message("ann@example.com"))
    assert len(smtp_server.messages) == 1
    assert sleeps == [1.0]


def test_a_lasting_4xx_becomes_a_temporary_error(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    smtp_server.behave("451", recipient="ann@example.com")
    with plain(smtp_server, sleeps, max_retries=2) as backend:
        with pytest.raises(TemporarySendError) as caught:
            backend.send(message("ann@example.com"))
        backend.send(message("bob@example.com"))  # others still go through
    assert str(caught.value) == (
        "ann@example.com: 451 4.3.0 Temporary failure, try again later"
        " (RCPT TO ann@example.com) (after 3 attempts)"
    )
    assert sleeps == [1.0, 2.0]
    assert [m.rcpt_tos for m in smtp_server.messages] == [("bob@example.com",)]


def test_a_connection_dropped_before_data_is_retried(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    smtp_server.behave("drop-before-data", times=1)
    with plain(smtp_server, sleeps) as backend:
        backend.send(message("ann@example.com"))
    assert len(smtp_server.messages) == 1
    assert smtp_server.dropped == []
    assert sleeps == [1.0]
    assert smtp_server.connections == 2


def test_a_server_that_is_not_there_is_a_temporary_error(sleeps: Sleeps) -> None:
    config = SmtpConfig(host="127.0.0.1", port=free_port(), security="none", max_retries=2)
    backend = SmtpBackend(config, sleep=sleeps, clock=sleeps.clock, environ={})
    with pytest.raises(TemporarySendError, match=r"^smtp: cannot connect to 127\.0\.0\.1:\d+: "):
        backend.__enter__()
    assert sleeps == [1.0, 2.0]
    with pytest.raises(TemporarySendError, match=r"connection failed.*after 3 attempts"):
        backend.send(message("ann@example.com"))


def test_backoff_grows_and_is_capped(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    smtp_server.behave("451")
    backend = plain(smtp_server, sleeps, max_retries=8)
    with backend, pytest.raises(TemporarySendError):
        backend.send(message("ann@example.com"))
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


# --- permanent and uncertain failures -----------------------------------------------------


def test_550_fails_that_recipient_and_the_run_goes_on(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    smtp_server.behave("550", recipient="bob@example.com")
    outcomes = {}
    with plain(smtp_server, sleeps) as backend:
        for name in ("ann", "bob", "carol"):
            try:
                backend.send(message(f"{name}@example.com"))
                outcomes[name] = "sent"
            except PermanentSendError as exc:
                outcomes[name] = str(exc)
    assert outcomes == {
        "ann": "sent",
        "bob": "bob@example.com: 550 5.1.1 No such user here (RCPT TO bob@example.com)",
        "carol": "sent",
    }
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ("ann@example.com",),
        ("carol@example.com",),
    ]
    assert sleeps == []  # never retried
    assert backend.connections == 1


def test_550_at_the_end_of_data_is_permanent(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    smtp_server.behave("550-data", recipient="ann@example.com")
    backend = plain(smtp_server, sleeps)
    with backend, pytest.raises(PermanentSendError, match=r"550 5\.7\.1 Message refused"):
        backend.send(message("ann@example.com"))
    assert smtp_server.messages == []
    assert sleeps == []


def test_a_connection_lost_after_data_is_uncertain_and_not_retried(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    smtp_server.behave("drop-after-data", recipient="ann@example.com", times=1)
    with plain(smtp_server, sleeps) as backend:
        with pytest.raises(UncertainSendError, match=r"^ann@example\.com: connection to .* lost"):
            backend.send(message("ann@example.com"))
        backend.send(message("bob@example.com"))  # the run goes on, on a new connection
    assert [m.rcpt_tos for m in smtp_server.dropped] == [("ann@example.com",)]
    assert [m.rcpt_tos for m in smtp_server.messages] == [("bob@example.com",)]
    assert sleeps == []
    assert smtp_server.connections == 2


def test_a_message_without_recipient_is_refused_before_connecting(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    msg = message("ann@example.com")
    del msg["To"]
    backend = plain(smtp_server, sleeps)
    with pytest.raises(PermanentSendError, match="message has no recipient"):
        backend.send(msg)
    assert backend.connections == 0


# --- rate limit ---------------------------------------------------------------------------


def test_the_rate_limit_spaces_messages(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    with plain(smtp_server, sleeps, rate_limit=4) as backend:
        for i in range(5):
            backend.send(message(f"s{i}@example.com"))
    assert sleeps == [0.25, 0.25, 0.25, 0.25]
    assert len(smtp_server.messages) == 5


def test_no_wait_when_the_sender_is_already_slower_than_the_limit(
    smtp_server: SmtpServer, sleeps: Sleeps
) -> None:
    with plain(smtp_server, sleeps, rate_limit=4) as backend:
        backend.send(message("a@example.com"))
        sleeps.now += 0.2  # rendering took a while
        backend.send(message("b@example.com"))
        sleeps.now += 1.0
        backend.send(message("c@example.com"))
    assert sleeps == [0.05]


# --- TLS and login ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that verifies certificates, trusting our test one as a CA."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def starttls_server(server_tls: ssl.SSLContext) -> Iterator[SmtpServer]:
    with SmtpServer(starttls=server_tls, credentials={"news": "s3cret"}) as server:
        yield server


def test_starttls_with_a_verified_certificate_and_login(
    starttls_server: SmtpServer, trusting: ssl.SSLContext, sleeps: Sleeps
) -> None:
    config = SmtpConfig(host="127.0.0.1", port=starttls_server.port, security="starttls")
    with SmtpBackend(config, sleep=sleeps, environ=CREDENTIALS, ssl_context=trusting) as backend:
        backend.send(message("ann@example.com"))
        backend.send(message("bob@example.com"))
    received = starttls_server.messages
    assert [(m.tls, m.login) for m in received] == [(True, "news"), (True, "news")]
    assert starttls_server.logins == 1  # logged in once, for one connection


def test_implicit_tls_with_login(
    server_tls: ssl.SSLContext, trusting: ssl.SSLContext, sleeps: Sleeps
) -> None:
    with SmtpServer(implicit_tls=server_tls, credentials={"news": "s3cret"}) as server:
        config = SmtpConfig(host="127.0.0.1", port=server.port, security="tls")
        with SmtpBackend(config, sleep=sleeps, environ=CREDENTIALS, ssl_context=trusting) as b:
            b.send(message("ann@example.com"))
        assert [(m.tls, m.login) for m in server.messages] == [(True, "news")]


def test_an_untrusted_certificate_is_refused_before_login(
    starttls_server: SmtpServer, sleeps: Sleeps
) -> None:
    # The default context: system CAs only, which never signed our test certificate.
    config = SmtpConfig(host="127.0.0.1", port=starttls_server.port, security="starttls")
    backend = SmtpBackend(config, sleep=sleeps, environ=CREDENTIALS)
    with pytest.raises(SendError, match=r"certificate of 127\.0\.0\.1:\d+ is not trusted") as e:
        backend.__enter__()
    assert type(e.value) is SendError  # not temporary: retrying would not help
    assert sleeps == []
    assert starttls_server.logins == 0
    assert starttls_server.messages == []


def test_implicit_tls_to_a_plain_port_says_what_to_check(
    smtp_server: SmtpServer, trusting: ssl.SSLContext, sleeps: Sleeps
) -> None:
    config = SmtpConfig(host="127.0.0.1", port=smtp_server.port, security="tls", timeout=5)
    backend = SmtpBackend(config, sleep=sleeps, environ={}, ssl_context=trusting)
    with pytest.raises(SendError, match=r"is smtp\.security 'tls' right for port"):
        backend.__enter__()


def test_no_login_without_tls(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    config = SmtpConfig(host="127.0.0.1", port=smtp_server.port, security="none")
    with pytest.raises(SendError) as caught:
        SmtpBackend(config, sleep=sleeps, environ=CREDENTIALS)
    assert str(caught.value) == (
        "smtp: refusing to log in as news without TLS (smtp.security is 'none'):"
        " the password would cross the network in clear; use starttls or tls"
    )
    assert smtp_server.connections == 0


def test_starttls_required_but_not_offered(smtp_server: SmtpServer, sleeps: Sleeps) -> None:
    config = SmtpConfig(host="127.0.0.1", port=smtp_server.port, security="starttls")
    backend = SmtpBackend(config, sleep=sleeps, environ=CREDENTIALS)
    with pytest.raises(SendError, match=r"does not offer STARTTLS.*refusing to send in clear"):
        backend.__enter__()
    assert smtp_server.logins == 0


def test_a_wrong_password_stops_with_a_clear_error(
    starttls_server: SmtpServer, trusting: ssl.SSLContext, sleeps: Sleeps
) -> None:
    config = SmtpConfig(host="127.0.0.1", port=starttls_server.port, security="starttls")
    env = {**CREDENTIALS, "PUBLISHER_SMTP_PASSWORD": "wrong"}
    backend = SmtpBackend(config, sleep=sleeps, environ=env, ssl_context=trusting)
    with pytest.raises(SendError, match=r"refused the login as news: 535 5\.7\.8"):
        backend.__enter__()
    assert sleeps == []


def test_half_set_credentials_name_the_missing_variable() -> None:
    with pytest.raises(SendError, match=r"^smtp: SMTP_USER is set but SMTP_PASS is not"):
        SmtpBackend(
            SmtpConfig(username_env="SMTP_USER", password_env="SMTP_PASS"),
            environ={"SMTP_USER": "news"},
        )


def test_make_backend_reads_the_config_and_the_environment(
    site: Site, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBLISHER_SMTP_USERNAME", raising=False)
    monkeypatch.delenv("PUBLISHER_SMTP_PASSWORD", raising=False)
    site.write_config(digest={"backend": "smtp"}, smtp=smtp_server.config())
    with make_backend(site.config()) as backend:
        assert backend.name == "smtp"
        backend.send(message("ann@example.com"))
    assert len(smtp_server.messages) == 1
    monkeypatch.setenv("PUBLISHER_SMTP_USERNAME", "news")
    monkeypatch.setenv("PUBLISHER_SMTP_PASSWORD", "s3cret")
    with pytest.raises(SendError, match="refusing to log in as news without TLS"):
        make_backend(site.config())


def test_the_test_server_receives_from_another_process(smtp_server: SmtpServer) -> None:
    # What the end-to-end tests rely on: `publisher` runs in a subprocess and the
    # server, in this process, sees what it sent.
    script = (
        "import smtplib, sys\n"
        "with smtplib.SMTP('127.0.0.1', int(sys.argv[1])) as s:\n"
        "    s.sendmail('news@example.com', ['ann@example.com'],\n"
        "               b'Subject: Hi\\r\\n\\r\\nHello\\r\\n')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(smtp_server.port)], check=True, timeout=30)
    [received] = smtp_server.wait_for(1)
    assert received.message["Subject"] == "Hi"
    assert received.rcpt_tos == ("ann@example.com",)

"""A real SMTP server on 127.0.0.1 for tests, built on aiosmtpd.

Use the ``smtp_server`` fixture (exposed in conftest.py) or the class directly::

    with SmtpServer() as server:
        ... send to server.host, server.port ...
        [received] = server.wait_for(1)
        assert received.message["Subject"] == "Hello"

The server runs in a thread of the test process, so a ``publisher`` subprocess
can send to it too: point ``smtp.host``/``smtp.port`` at it with
``security: none`` (see :meth:`SmtpServer.config`).

Tell it how to misbehave with :meth:`SmtpServer.behave`, for one recipient or
for every one, always or for the next N messages:

===================  ===========================================================
``accept``           take the message (the default)
``421``              answer RCPT with 421 and close the connection
``451``              answer RCPT with 451 (try again later)
``550``              answer RCPT with 550 (no such user)
``451-data``         take RCPT, answer the end of DATA with 451
``550-data``         take RCPT, answer the end of DATA with 550
``drop-before-data`` close the connection when RCPT arrives, without a reply
``drop-after-data``  read the whole message, then close without a reply
===================  ===========================================================

A message read before a drop is kept in :attr:`SmtpServer.dropped`, since a
real server may well have delivered it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = [
    "Behaviour",
    "Received",
    "SmtpServer",
    "make_certificate",
    "smtp_server",
]

Behaviour = Literal[
    "accept",
    "421",
    "451",
    "550",
    "451-data",
    "550-data",
    "drop-before-data",
    "drop-after-data",
]
_RCPT_REPLIES = {
    "421": "421 4.3.2 Service shutting down, closing connection",
    "451": "451 4.3.0 Temporary failure, try again later",
    "550": "550 5.1.1 No such user here",
}
_DATA_STAGE = frozenset({"451-data", "550-data", "drop-after-data"})
_DATA_REPLIES = {
    "451-data": "451 4.3.0 Queue full, try again later",
    "550-data": "550 5.7.1 Message refused",
}


@dataclass(frozen=True)
class Received:
    """One message as the server read it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly the bytes after DATA, dot-unstuffed
    message: EmailMessage  # parsed with email.policy.default
    tls: bool  # arrived over TLS (STARTTLS or implicit)
    login: str | None  # the user who logged in, if any
    mail_options: tuple[str, ...] = ()  # the MAIL FROM parameters, e.g. ("BODY=8BITMIME",)


@dataclass
class _Rule:
    behaviour: str
    recipient: str | None
    times: int | None


class _Handler:
    """aiosmtpd hooks; runs on the server's event loop thread."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server
        # Messages accepted per connection (aiosmtpd makes one Session per connection).
        self.accepted: weakref.WeakKeyDictionary[Session, int] = weakref.WeakKeyDictionary()

    async def handle_EHLO(
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to the hook
        if session not in self.accepted:  # EHLO comes again after STARTTLS
            limit = self.server.connection_limit
            if limit is not None and self.server.connections >= limit:
                await smtp.push("421 4.7.0 Too many connections, try again later")
                _hang_up()
            self.accepted[session] = 0
            self.server._count_connection()
        if not self.server.eight_bit_mime:
            responses = [r for r in responses if r != "250-8BITMIME"]
        return responses

    async def handle_RCPT(
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        behaviour = self.server._take(address, stage="rcpt")
        if behaviour == "drop-before-data":
            _hang_up()
        if behaviour == "421":
            await smtp.push(_RCPT_REPLIES["421"])
            _hang_up()
        if behaviour in _RCPT_REPLIES:
            return _RCPT_REPLIES[behaviour]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        data = cast(bytes, envelope.original_content or b"")
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            # Parsed with plain line ends, so a test compares bodies as Python text.
            message=cast(
                EmailMessage,
                email.message_from_bytes(data.replace(b"\r\n", b"\n"), policy=email.policy.default),
            ),
            tls=smtp.transport is not None
            and smtp.transport.get_extra_info("ssl_object") is not None,
            login=_login_name(session),
            mail_options=tuple(envelope.mail_options),
        )
        behaviour = "accept"
        for rcpt in envelope.rcpt_tos:
            behaviour = self.server._take(rcpt, stage="data")
            if behaviour != "accept":
                break
        if behaviour == "drop-after-data":
            self.server._record(received, dropped=True)
            _hang_up()
        if behaviour in _DATA_REPLIES:
            return _DATA_REPLIES[behaviour]
        self.server._record(received, dropped=False)
        self.accepted[session] = self.accepted.get(session, 0) + 1
        limit = self.server.messages_per_connection
        if limit is not None and self.accepted[session] >= limit:
            # Like a server with a per-connection limit: answer, then hang up. The
            # reply is written before the loop runs this callback, and close()
            # flushes it.
            transport = smtp.transport
            if transport is not None:
                asyncio.get_running_loop().call_soon(transport.close)
        return "250 OK: queued"


def _hang_up() -> None:
    # aiosmtpd closes the connection without a reply when a command handler is
    # cancelled (its own QUIT path does the same), so this is a clean hang-up.
    raise asyncio.CancelledError


def _login_name(session: Session) -> str | None:
    data = session.auth_data
    if isinstance(data, LoginPassword):
        return data.login.decode()
    return None


class _Authenticator:
    def __init__(self, credentials: dict[str, str], server: SmtpServer) -> None:
        self.credentials = credentials
        self.server = server

    def __call__(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.server._count_login()
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.credentials.get(user) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port, collecting what it receives.

    ``starttls``: a server-side SSLContext to offer STARTTLS with.
    ``implicit_tls``: a server-side SSLContext to speak TLS from the first byte.
    ``credentials``: user -> password; enables AUTH (only over TLS, as real servers do).
    ``eight_bit_mime``: announce 8BITMIME (aiosmtpd does by default); False plays a
    server that takes 7-bit messages only.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        credentials: dict[str, str] | None = None,
        eight_bit_mime: bool = True,
    ) -> None:
        self.port = 0
        self.messages_per_connection: int | None = None
        self.connection_limit: int | None = None  # refuse (421) connections past this many
        self.eight_bit_mime = eight_bit_mime
        self._starttls = starttls
        self._implicit_tls = implicit_tls
        self._credentials = credentials
        self._lock = threading.Condition()
        self._messages: list[Received] = []
        self._dropped: list[Received] = []
        self._rules: list[_Rule] = []
        self._connections = 0
        self._logins = 0
        self._controller: Controller | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {}
        if self._starttls is not None:
            kwargs["tls_context"] = self._starttls
        if self._credentials is not None:
            kwargs["authenticator"] = _Authenticator(self._credentials, self)
            # aiosmtpd only notices TLS it started itself (STARTTLS); with implicit
            # TLS every byte is encrypted anyway.
            kwargs["auth_require_tls"] = self._implicit_tls is None
        for _attempt in range(5):
            port = free_port()
            controller = Controller(
                _Handler(self),
                hostname=self.host,
                port=port,
                ssl_context=self._implicit_tls,
                ready_timeout=10,
                **kwargs,
            )
            try:
                controller.start()
            except OSError:  # someone took the port in between: pick another
                continue
            self._controller = controller
            self.port = port
            return self
        raise RuntimeError("no free port for the test SMTP server")

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def config(self, **extra: Any) -> dict[str, Any]:
        """An ``smtp:`` config section that reaches this server (plaintext, no login)."""
        return {"host": self.host, "port": self.port, "security": "none", **extra}

    # --- behaviour -------------------------------------------------------------------------

    def behave(
        self, behaviour: Behaviour, *, recipient: str | None = None, times: int | None = None
    ) -> None:
        """Misbehave for ``recipient`` (or everyone) the next ``times`` times (or always).

        The latest rule that matches wins; a rule used up falls back to earlier ones.
        """
        if behaviour not in Behaviour.__args__:  # type: ignore[attr-defined]
            raise ValueError(f"unknown behaviour {behaviour!r}")
        with self._lock:
            self._rules.append(_Rule(behaviour, recipient.lower() if recipient else None, times))

    def reset(self) -> None:
        """Forget every rule and everything received."""
        with self._lock:
            self._rules.clear()
            self._messages.clear()
            self._dropped.clear()
            self._connections = 0
            self._logins = 0

    def _take(self, recipient: str, stage: str) -> str:
        """The behaviour for this recipient at this stage, using up a counted rule."""
        wanted = recipient.lower()
        with self._lock:
            for rule in reversed(self._rules):
                if rule.recipient not in (None, wanted):
                    continue
                if rule.behaviour == "accept":
                    if stage == "rcpt":
                        self._use(rule)
                    return "accept"
                if (rule.behaviour in _DATA_STAGE) != (stage == "data"):
                    continue
                self._use(rule)
                return rule.behaviour
        return "accept"

    def _use(self, rule: _Rule) -> None:
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                self._rules.remove(rule)

    # --- what arrived ----------------------------------------------------------------------

    def _record(self, received: Received, *, dropped: bool) -> None:
        with self._lock:
            (self._dropped if dropped else self._messages).append(received)
            self._lock.notify_all()

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _count_login(self) -> None:
        with self._lock:
            self._logins += 1

    @property
    def messages(self) -> list[Received]:
        """The messages accepted so far, in order of arrival."""
        with self._lock:
            return list(self._messages)

    @property
    def dropped(self) -> list[Received]:
        """Messages read in full before the server hung up without answering."""
        with self._lock:
            return list(self._dropped)

    @property
    def connections(self) -> int:
        """How many SMTP sessions (EHLO/HELO) were opened."""
        with self._lock:
            return self._connections

    @property
    def logins(self) -> int:
        """How many AUTH attempts were made."""
        with self._lock:
            return self._logins

    def to(self, recipient: str) -> list[Received]:
        """The accepted messages for ``recipient``."""
        wanted = recipient.lower()
        return [m for m in self.messages if wanted in (r.lower() for r in m.rcpt_tos)]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` messages were accepted (for senders in other processes)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} messages, got {len(self._messages)} in {timeout}s"
                    )
                self._lock.wait(left)
            return list(self._messages)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem).

    Made with the openssl command, since the test environment has no Python
    library for it; tests that need one skip with a clear reason without it.
    """
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a test certificate with openssl: {exc}")
    return cert, key


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server on 127.0.0.1 (no TLS, no login) collecting messages."""
    with SmtpServer() as server:
        yield server

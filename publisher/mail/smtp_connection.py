"""One SMTP connection: connect, TLS, login, and one message's transaction with its replies.

:class:`Connector` opens verified connections for a backend;
:class:`Channel` is one thread's connection and drives one transaction at a
time. A failure is raised as what it means for the message: :class:`Retry`
(certainly not taken: the backend may try again), PermanentSendError (5xx),
UncertainSendError (the connection was lost after the whole message was
sent, before the server answered), SendError (this can never work: TLS,
login, no STARTTLS).

The transaction is driven command by command (MAIL, RCPT, DATA, body, reply)
instead of through ``smtplib.SMTP.sendmail``, because sendmail cannot tell a
connection lost before the body from one lost after it, and that difference is
exactly "retry" versus "maybe sent".

What it must never do: write the password to a socket that is not TLS with a
verified certificate; send in clear when ``smtp.security`` asks for TLS; call
a message certainly not sent once its final dot may have left; wait, count
attempts or share a connection between threads (those are the backend's,
:mod:`publisher.mail.smtp`).
"""

from __future__ import annotations

import functools
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable

from publisher.config import SmtpConfig
from publisher.errors import PermanentSendError, SendError, UncertainSendError
from publisher.mail.base import Message, PreparedMessage, envelope, wire_bytes

__all__ = ["Channel", "Connector", "Payload", "Retry"]


class Retry(Exception):
    """A failure worth another attempt; ``message`` says what happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _VerifiedSMTP_SSL(smtplib.SMTP_SSL):
    """SMTP_SSL that closes its socket when the TLS handshake fails.

    The standard class leaks the plain socket in that case, which shows up as a
    ResourceWarning and a file descriptor held until garbage collection.
    """

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        raw = socket.create_connection((host, port), timeout, self.source_address)
        try:
            return self.context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}".strip()


# An address smtplib would send as it is, in angle brackets.
_PLAIN_ADDRESS = re.compile(r"[^\s<>()\[\]\\,;:@\"]+@[^\s<>()\[\]\\,;:@\"]+")


def _command(
    conn: smtplib.SMTP, verb: str, prefix: str, address: str, options: list[str]
) -> tuple[int, bytes]:
    """MAIL FROM or RCPT TO, as ``conn.mail``/``conn.rcpt`` send them.

    Those parse every address again (email.utils.parseaddr), a tenth of the
    client's time per message in a digest run; a plain address needs none of it.
    """
    if "SMTPUTF8" in options or not _PLAIN_ADDRESS.fullmatch(address):
        if verb == "mail":
            return conn.mail(address, options)
        return conn.rcpt(address, options)
    extra = "".join(f" {option}" for option in options) if conn.does_esmtp else ""
    conn.putcmd(verb, f"{prefix}:<{address}>{extra}")
    return conn.getreply()


_STUFF = re.compile(rb"(?m)^\.")


def _data_block(data: bytes) -> bytes:
    """The DATA payload: leading dots doubled, ended by the lone-dot line."""
    # Searching first is ~20 times faster than the substitution, and encoded
    # bodies rarely have a line that starts with a dot.
    body = _STUFF.sub(b"..", data) if data.startswith(b".") or b"\n." in data else data
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class Payload:
    """One message's envelope and DATA payload, each form made once however often it is tried."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.sender, self.recipients = envelope(message)
        self.who = ", ".join(self.recipients)  # names the message in errors
        self._blocks: dict[bool, tuple[list[str], bytes]] = {}

    def block(self, eight_bit: bool) -> tuple[list[str], bytes]:
        """MAIL FROM options and the DATA payload for a server with(out) 8BITMIME."""
        if eight_bit not in self._blocks:
            message = self.message
            if isinstance(message, PreparedMessage):
                data = message.data(eight_bit=eight_bit)
            else:
                data = wire_bytes(message)
            options = ["BODY=8BITMIME"] if not data.isascii() else []
            if not (self.sender + "".join(self.recipients)).isascii():
                options.append("SMTPUTF8")
            self._blocks[eight_bit] = options, _data_block(data)
        return self._blocks[eight_bit]


class Connector:
    """Opens connections to the server of ``settings``: greeting, STARTTLS, login.

    Shared by every thread of a backend; ``connections`` counts those opened.
    """

    def __init__(
        self,
        settings: SmtpConfig,
        credentials: tuple[str, str] | None,
        ssl_context: ssl.SSLContext | None,
        local_hostname: str | None,
    ) -> None:
        self.settings = settings
        self.where = f"{settings.host}:{settings.port}"
        self.connections = 0  # connections opened so far
        self._credentials = credentials
        self._context = ssl_context
        self._local_hostname = local_hostname
        self._lock = threading.Lock()

    def open(self) -> smtplib.SMTP:
        """Connect, greet, STARTTLS and log in; Retry or SendError on failure."""
        s = self.settings
        timeout = s.timeout or socket.getdefaulttimeout()
        conn: smtplib.SMTP | None = None
        try:
            # Given the host, the constructor connects, reads the greeting, and
            # remembers the host name that STARTTLS verifies the certificate against.
            if s.security == "tls":
                conn = _VerifiedSMTP_SSL(
                    s.host,
                    s.port,
                    local_hostname=self._local_hostname,
                    timeout=timeout,  # type: ignore[arg-type]
                    context=self._tls_context(),
                )
            else:
                conn = smtplib.SMTP(
                    s.host,
                    s.port,
                    local_hostname=self._local_hostname,
                    timeout=timeout,  # type: ignore[arg-type]
                )
            conn.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                if not conn.has_extn("starttls"):
                    raise SendError(
                        f"smtp: {self.where} does not offer STARTTLS, and smtp.security is"
                        " 'starttls': refusing to send in clear"
                    )
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self._credentials is not None:
                self._login(conn, *self._credentials)
            # smtplib looks the host name up (a DNS query) for every connection;
            # once per backend is enough.
            self._local_hostname = conn.local_hostname
        except BaseException as exc:
            if conn is not None:
                conn.close()
            self._explain(exc)
            raise
        with self._lock:
            self.connections += 1
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def _explain(self, exc: BaseException) -> None:
        """Raise the error a user should see for a failed connection setup, if any."""
        s = self.settings
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise SendError(
                f"smtp: the certificate of {self.where} is not trusted:"
                f" {exc.verify_message or exc.reason}"
            ) from exc
        if isinstance(exc, ssl.SSLError):
            raise SendError(
                f"smtp: TLS with {self.where} failed ({exc.reason or exc});"
                f" is smtp.security '{s.security}' right for port {s.port}?"
            ) from exc
        if isinstance(exc, smtplib.SMTPResponseException):
            self._refused(exc.smtp_code, exc.smtp_error, "connection")
        if isinstance(exc, smtplib.SMTPException | OSError):
            raise Retry(f"connection failed: {exc or type(exc).__name__}") from exc

    def _refused(self, code: int, reply: bytes | str, stage: str) -> None:
        text = _reply_text(code, reply)
        if 400 <= code < 500 or code == -1:
            raise Retry(f"{text} ({stage})")
        raise SendError(f"smtp: {self.where} refused the {stage}: {text}")

    def _login(self, conn: smtplib.SMTP, user: str, password: str) -> None:
        # Checked here again, not only when the backend is made: whatever happened
        # on the way, a password is only ever written to a TLS socket.
        if not isinstance(conn.sock, ssl.SSLSocket):
            raise SendError(f"smtp: refusing to log in as {user} without TLS")
        if not conn.has_extn("auth"):
            raise SendError(f"smtp: {self.where} offers no login (AUTH), but {user} is set")
        try:
            conn.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            text = _reply_text(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise Retry(f"login: {text}") from exc
            raise SendError(f"smtp: {self.where} refused the login as {user}: {text}") from exc


class Channel:
    """One thread's connection, and what its server announced."""

    def __init__(self, connector: Connector, generation: int) -> None:
        self.generation = generation  # the backend's, when this channel was made
        self.conn: smtplib.SMTP | None = None
        self.eight_bit = False  # the server announced 8BITMIME
        self._connector = connector
        self._where = connector.where

    def connection(self) -> smtplib.SMTP:
        """The open connection, opened first if there is none; Retry or SendError."""
        if self.conn is None:
            conn = self._connector.open()
            self.eight_bit = conn.has_extn("8bitmime")
            self.conn = conn
        return self.conn

    def close(self) -> None:
        """Say QUIT politely if the connection still works, and close it."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            conn.close()

    def discard(self) -> None:
        """Drop a connection that cannot be trusted any more, without talking to it."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def transaction(self, payload: Payload) -> None:
        """Hand one message over: MAIL, RCPT, DATA, the body, the final reply."""
        sender, recipients, who = payload.sender, payload.recipients, payload.who
        reused = self.conn is not None
        conn = self.connection()
        options, data = payload.block(self.eight_bit)
        try:
            code, reply = _command(conn, "mail", "FROM", sender, options)
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentSendError(f"{who}: {exc} (MAIL FROM)") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.discard()
            if not reused:
                raise Retry(f"connection to {self._where} lost at MAIL FROM: {exc}") from exc
            # The server closed the idle connection between two messages: that is
            # normal, not a failure, so reconnect at once and carry on.
            conn = self.connection()
            options, data = payload.block(self.eight_bit)
            code, reply = self._call(
                "MAIL FROM", lambda: _command(conn, "mail", "FROM", sender, options)
            )
        self._check(code, reply, "MAIL FROM", who, (250,))
        for recipient in recipients:
            code, reply = self._call(
                "RCPT TO", functools.partial(_command, conn, "rcpt", "TO", recipient, [])
            )
            self._check(code, reply, f"RCPT TO {recipient}", who, (250, 251))

        def start_data() -> tuple[int, bytes]:
            conn.putcmd("data")
            return conn.getreply()

        code, reply = self._call("DATA", start_data)
        self._check(code, reply, "DATA", who, (354,))
        try:
            conn.send(data)
        except (smtplib.SMTPException, OSError) as exc:
            # sendall failed, so the final dot never left: the server cannot have
            # accepted the message, and trying again is safe.
            self.discard()
            raise Retry(f"connection to {self._where} lost while sending: {exc}") from exc
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self.discard()
            raise UncertainSendError(
                f"{who}: connection to {self._where} lost after the message was sent,"
                f" before the server confirmed it ({exc}): delivery unknown"
            ) from exc
        self._check(code, reply, "end of DATA", who, (250,))

    def _call(self, what: str, command: Callable[[], tuple[int, bytes]]) -> tuple[int, bytes]:
        """Run one command whose failure means the message was certainly not taken."""
        try:
            return command()
        except (smtplib.SMTPException, OSError) as exc:
            self.discard()
            raise Retry(f"connection to {self._where} lost at {what}: {exc}") from exc

    def _check(self, code: int, reply: bytes, what: str, who: str, ok: tuple[int, ...]) -> None:
        """Turn a reply into success, a retry or a permanent failure."""
        if code in ok:
            return
        text = _reply_text(code, reply)
        if code == 421:
            # The server is closing this connection; the next attempt opens another.
            self.discard()
        elif self.conn is not None:
            self._reset()
        if 500 <= code < 600:
            raise PermanentSendError(f"{who}: {text} ({what})")
        raise Retry(f"{text} ({what})")

    def _reset(self) -> None:
        """End a refused transaction so the connection can carry the next message."""
        assert self.conn is not None
        try:
            code, _ = self.conn.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self.discard()

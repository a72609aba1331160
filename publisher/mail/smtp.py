"""The SMTP backend: one verified TLS connection per sending thread, reused for every message.

What it guarantees, because a digest goes to thousands of people at once:

* the password never crosses the network in clear: with credentials set it
  refuses ``security: none``, and it logs in only on a TLS socket whose
  certificate was verified (``ssl.create_default_context()``);
* one connection carries every message a thread sends; if the server closed
  it while idle, the next message reconnects without counting as a failure.
  Each thread that calls ``send`` gets a connection of its own, so a sender
  may use ``smtp.connections`` threads (see ``concurrency``): while one waits
  for the server's reply, another prepares its next message;
* a rate limit in messages per second for the backend as a whole (threads
  share it), with an injected clock and sleep;
* 8-bit bodies only to a server that announces 8BITMIME (then with
  ``BODY=8BITMIME``); a prepared message goes to any other in its 7-bit form;
* 4xx replies and connection failures *before the message was handed over*
  are retried with exponential backoff, then raised as TemporarySendError;
* a 5xx reply is a PermanentSendError for that message; the connection stays
  usable for the next one;
* if the connection is lost after the whole message was sent but before the
  server answered, nobody knows whether it was delivered: UncertainSendError,
  never retried here, because a retry could deliver it twice.

The transaction is driven command by command (MAIL, RCPT, DATA, body, reply)
instead of through ``smtplib.SMTP.sendmail``, because sendmail cannot tell a
connection lost before the body from one lost after it, and that difference is
exactly "retry" versus "maybe sent".
"""

from __future__ import annotations

import functools
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from publisher.config import SmtpConfig
from publisher.errors import (
    PermanentSendError,
    SendError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail.base import Message, PreparedMessage, envelope, wire_bytes

__all__ = ["SmtpBackend"]

MAX_BACKOFF = 60.0


class _Retry(Exception):
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


class _Channel:
    """One thread's connection, and what its server announced."""

    def __init__(self, generation: int) -> None:
        self.generation = generation  # the backend's, when this channel was made
        self.conn: smtplib.SMTP | None = None
        self.eight_bit = False  # the server announced 8BITMIME


class SmtpBackend:
    """Sends through an SMTP server as configured by ``smtp:`` in config.yaml.

    ``send`` may be called from several threads at once; each thread uses a
    connection of its own.
    """

    name = "smtp"

    def __init__(
        self,
        settings: SmtpConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backoff: float = 1.0,
        local_hostname: str | None = None,
    ) -> None:
        """Check the settings and read credentials; no connection is made yet.

        ``ssl_context`` defaults to ``ssl.create_default_context()`` (system CAs,
        hostname checked); tests pass one that trusts their own certificate.
        Raises SendError for credentials that could only be sent in clear.
        """
        self.settings = settings
        env = os.environ if environ is None else environ
        user = env.get(settings.username_env, "")
        password = env.get(settings.password_env, "")
        if bool(user) != bool(password):
            have, missing = (
                (settings.username_env, settings.password_env)
                if user
                else (settings.password_env, settings.username_env)
            )
            raise SendError(f"smtp: {have} is set but {missing} is not; set both or neither")
        if user and settings.security == "none":
            raise SendError(
                f"smtp: refusing to log in as {user} without TLS (smtp.security is 'none'):"
                " the password would cross the network in clear; use starttls or tls"
            )
        self._credentials = (user, password) if user else None
        self._context = ssl_context
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff
        self._local_hostname = local_hostname
        self._local = threading.local()  # .channel: the calling thread's connection
        self._channels: list[_Channel] = []
        self._generation = 0  # bumped by close(): threads then start new channels
        self._lock = threading.Lock()
        self._next_slot: float | None = None
        self.connections = 0  # connections opened so far
        self.concurrency = settings.connections  # threads a sender may use at once
        self.where = f"{settings.host}:{settings.port}"

    # --- connection ------------------------------------------------------------------------

    def __enter__(self) -> SmtpBackend:
        """Connect (with retries) so that a wrong host, TLS or login fails before any send."""
        self.connect()
        return self

    def connect(self) -> None:
        """Open the calling thread's connection now, with retries.

        Raises TemporarySendError when the server cannot be reached (or keeps
        refusing), SendError when it never could be (TLS, login).
        """
        channel = self._channel()
        last = _Retry("no attempt made")
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt))
            try:
                self._connection(channel)
                return
            except _Retry as exc:
                last = exc
        raise TemporarySendError(
            f"smtp: cannot connect to {self.where}: {last.message}"
            f" (after {self.settings.max_retries + 1} attempts)"
        ) from last

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Say QUIT politely on every connection that still works, and close them.

        Call it once the threads that sent are done with the backend.
        """
        with self._lock:
            channels, self._channels = self._channels, []
            self._generation += 1
        for channel in channels:
            conn, channel.conn = channel.conn, None
            if conn is None:
                continue
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
            finally:
                conn.close()

    def _channel(self) -> _Channel:
        """The calling thread's channel, made on its first use."""
        channel: _Channel | None = getattr(self._local, "channel", None)
        if channel is None or channel.generation != self._generation:
            with self._lock:
                channel = _Channel(self._generation)
                self._channels.append(channel)
            self._local.channel = channel
        return channel

    def _discard(self, channel: _Channel) -> None:
        """Drop a connection that cannot be trusted any more, without talking to it."""
        conn, channel.conn = channel.conn, None
        if conn is not None:
            conn.close()

    def _connection(self, channel: _Channel) -> smtplib.SMTP:
        if channel.conn is None:
            conn = self._open()
            channel.eight_bit = conn.has_extn("8bitmime")
            channel.conn = conn
            with self._lock:
                self.connections += 1
        return channel.conn

    def _open(self) -> smtplib.SMTP:
        """Connect, greet, STARTTLS and log in; _Retry or SendError on failure."""
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
            return conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            self._explain(exc)
            raise

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
            raise _Retry(f"connection failed: {exc or type(exc).__name__}") from exc

    def _refused(self, code: int, reply: bytes | str, stage: str) -> None:
        text = _reply_text(code, reply)
        if 400 <= code < 500 or code == -1:
            raise _Retry(f"{text} ({stage})")
        raise SendError(f"smtp: {self.where} refused the {stage}: {text}")

    def _login(self, conn: smtplib.SMTP, user: str, password: str) -> None:
        # Checked here again, not only in __init__: whatever happened on the way,
        # a password is only ever written to a TLS socket.
        if not isinstance(conn.sock, ssl.SSLSocket):
            raise SendError(f"smtp: refusing to log in as {user} without TLS")
        if not conn.has_extn("auth"):
            raise SendError(f"smtp: {self.where} offers no login (AUTH), but {user} is set")
        try:
            conn.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            text = _reply_text(exc.smtp_code, exc.smtp_error)
            if 400 <= exc.smtp_code < 500:
                raise _Retry(f"login: {text}") from exc
            raise SendError(f"smtp: {self.where} refused the login as {user}: {text}") from exc

    # --- sending ---------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        return min(self._backoff * 2.0 ** (attempt - 1), MAX_BACKOFF)

    def _throttle(self) -> None:
        rate = self.settings.rate_limit
        if rate <= 0:
            return
        # One schedule for every thread: the limit is the backend's, not a connection's.
        with self._lock:
            now = self._clock()
            slot = now if self._next_slot is None or now >= self._next_slot else self._next_slot
            self._next_slot = slot + 1.0 / rate
        if slot > now:
            self._sleep(slot - now)

    def send(self, message: Message) -> None:
        """Deliver one message; see the module docstring for what each failure means."""
        sender, recipients = envelope(message)
        who = ", ".join(recipients)
        channel = self._channel()
        blocks: dict[bool, tuple[list[str], bytes]] = {}

        def block(eight_bit: bool) -> tuple[list[str], bytes]:
            """MAIL FROM options and the DATA payload for a server with(out) 8BITMIME."""
            if eight_bit not in blocks:
                if isinstance(message, PreparedMessage):
                    data = message.data(eight_bit=eight_bit)
                else:
                    data = wire_bytes(message)
                options = ["BODY=8BITMIME"] if not data.isascii() else []
                if not (sender + "".join(recipients)).isascii():
                    options.append("SMTPUTF8")
                blocks[eight_bit] = options, _data_block(data)
            return blocks[eight_bit]

        last = _Retry("no attempt made")
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt))
            self._throttle()
            try:
                self._transaction(channel, sender, recipients, block, who)
                return
            except _Retry as exc:
                last = exc
        raise TemporarySendError(
            f"{who}: {last.message} (after {self.settings.max_retries + 1} attempts)"
        ) from last

    def _call(
        self, channel: _Channel, what: str, command: Callable[[], tuple[int, bytes]]
    ) -> tuple[int, bytes]:
        """Run one command whose failure means the message was certainly not taken."""
        try:
            return command()
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(channel)
            raise _Retry(f"connection to {self.where} lost at {what}: {exc}") from exc

    def _check(
        self,
        channel: _Channel,
        code: int,
        reply: bytes,
        what: str,
        who: str,
        ok: tuple[int, ...],
    ) -> None:
        """Turn a reply into success, a retry or a permanent failure."""
        if code in ok:
            return
        text = _reply_text(code, reply)
        if code == 421:
            # The server is closing this connection; the next attempt opens another.
            self._discard(channel)
        elif channel.conn is not None:
            self._reset(channel)
        if 500 <= code < 600:
            raise PermanentSendError(f"{who}: {text} ({what})")
        raise _Retry(f"{text} ({what})")

    def _reset(self, channel: _Channel) -> None:
        """End a refused transaction so the connection can carry the next message."""
        assert channel.conn is not None
        try:
            code, _ = channel.conn.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._discard(channel)

    def _transaction(
        self,
        channel: _Channel,
        sender: str,
        recipients: list[str],
        block: Callable[[bool], tuple[list[str], bytes]],
        who: str,
    ) -> None:
        reused = channel.conn is not None
        conn = self._connection(channel)
        options, data = block(channel.eight_bit)
        try:
            code, reply = _command(conn, "mail", "FROM", sender, options)
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentSendError(f"{who}: {exc} (MAIL FROM)") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(channel)
            if not reused:
                raise _Retry(f"connection to {self.where} lost at MAIL FROM: {exc}") from exc
            # The server closed the idle connection between two messages: that is
            # normal, not a failure, so reconnect at once and carry on.
            conn = self._connection(channel)
            options, data = block(channel.eight_bit)
            code, reply = self._call(
                channel, "MAIL FROM", lambda: _command(conn, "mail", "FROM", sender, options)
            )
        self._check(channel, code, reply, "MAIL FROM", who, (250,))
        for recipient in recipients:
            code, reply = self._call(
                channel, "RCPT TO", functools.partial(_command, conn, "rcpt", "TO", recipient, [])
            )
            self._check(channel, code, reply, f"RCPT TO {recipient}", who, (250, 251))

        def start_data() -> tuple[int, bytes]:
            conn.putcmd("data")
            return conn.getreply()

        code, reply = self._call(channel, "DATA", start_data)
        self._check(channel, code, reply, "DATA", who, (354,))
        try:
            conn.send(data)
        except (smtplib.SMTPException, OSError) as exc:
            # sendall failed, so the final dot never left: the server cannot have
            # accepted the message, and trying again is safe.
            self._discard(channel)
            raise _Retry(f"connection to {self.where} lost while sending: {exc}") from exc
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._discard(channel)
            raise UncertainSendError(
                f"{who}: connection to {self.where} lost after the message was sent,"
                f" before the server confirmed it ({exc}): delivery unknown"
            ) from exc
        self._check(channel, code, reply, "end of DATA", who, (250,))

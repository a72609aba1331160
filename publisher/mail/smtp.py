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

This module is the backend's share: the credentials check, a channel per
thread, the rate limit, retries and backoff. One connection and one
message's transaction are :mod:`publisher.mail.smtp_connection`. What it must
never do: retry a message whose delivery is uncertain, let two threads use
one connection, or hold its lock while it sleeps or talks to the server.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from publisher.config import SmtpConfig
from publisher.errors import SendError, TemporarySendError
from publisher.mail.base import Message
from publisher.mail.ratelimit import RateLimiter
from publisher.mail.smtp_connection import Channel, Connector, Payload, Retry

__all__ = ["SmtpBackend"]

MAX_BACKOFF = 60.0


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
        credentials = (user, password) if user else None
        self._connector = Connector(settings, credentials, ssl_context, local_hostname)
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff
        self._local = threading.local()  # .channel: the calling thread's connection
        self._channels: list[Channel] = []
        self._generation = 0  # bumped by close(): threads then start new channels
        self._lock = threading.Lock()
        self._next_slot: float | None = None
        # Set by a sender that shares smtp.rate_limit with other processes.
        self.limiter: RateLimiter | None = None
        self.concurrency = settings.connections  # threads a sender may use at once
        self.where = self._connector.where

    @property
    def connections(self) -> int:
        """How many connections were opened so far."""
        return self._connector.connections

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
        last = Retry("no attempt made")
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt))
            try:
                channel.connection()
                return
            except Retry as exc:
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
            channel.close()

    def _channel(self) -> Channel:
        """The calling thread's channel, made on its first use."""
        channel: Channel | None = getattr(self._local, "channel", None)
        if channel is None or channel.generation != self._generation:
            with self._lock:
                channel = Channel(self._connector, self._generation)
                self._channels.append(channel)
            self._local.channel = channel
        return channel

    # --- sending ---------------------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        return min(self._backoff * 2.0 ** (attempt - 1), MAX_BACKOFF)

    def _throttle(self) -> None:
        rate = self.settings.rate_limit
        if rate <= 0:
            return
        if self.limiter is not None:
            # Senders sharing a period keep one schedule for all of them.
            self.limiter.acquire(1)
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
        payload = Payload(message)
        channel = self._channel()
        last = Retry("no attempt made")
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt))
            self._throttle()
            try:
                channel.transaction(payload)
                return
            except Retry as exc:
                last = exc
        raise TemporarySendError(
            f"{payload.who}: {last.message} (after {self.settings.max_retries + 1} attempts)"
        ) from last

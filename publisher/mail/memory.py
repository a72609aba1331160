"""The in-memory backend: keeps messages in a list, for tests of the code that sends.

Like httpx's MockTransport, it stands in for the real thing where no server is
wanted, and can be told to fail for given recipients, so a send loop's handling
of every outcome can be checked without a network.

Never touches the network or a file: every message stays in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType

from publisher.errors import SendError, UncertainSendError
from publisher.mail.base import Message, PreparedMessage, envelope, wire_bytes

__all__ = ["MemoryBackend"]


@dataclass
class _Failure:
    error: SendError
    times: int | None  # None: every time


class MemoryBackend:
    """Keeps every accepted message in ``messages``; fails on request."""

    name = "memory"

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.attempts = 0
        self.opened = 0
        self.is_open = False
        self._failures: dict[str, _Failure] = {}

    def fail_for(self, recipient: str, error: SendError, *, times: int | None = None) -> None:
        """Raise ``error`` when sending to ``recipient`` (the next ``times`` times, or always).

        An UncertainSendError behaves like a real lost connection after DATA:
        the message is kept (it did arrive) and the error is raised all the same.
        """
        self._failures[recipient.lower()] = _Failure(error, times)

    def __enter__(self) -> MemoryBackend:
        self.opened += 1
        self.is_open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.is_open = False

    def send(self, message: Message) -> None:
        """Keep the message, or raise the failure set for one of its recipients.

        A prepared message is kept parsed back from its bytes, as a server would
        read it, so tests look at both kinds the same way.
        """
        self.attempts += 1
        _, recipients = envelope(message)
        if isinstance(message, PreparedMessage):
            message = message.as_email()
        else:
            wire_bytes(message)  # fail here, as a real backend would, if it cannot be serialised
        for recipient in recipients:
            failure = self._failures.get(recipient.lower())
            if failure is None:
                continue
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    del self._failures[recipient.lower()]
            if isinstance(failure.error, UncertainSendError):
                self.messages.append(message)
            raise failure.error
        self.messages.append(message)

    def to(self, recipient: str) -> list[EmailMessage]:
        """The accepted messages addressed to ``recipient``."""
        wanted = recipient.lower()
        return [m for m in self.messages if wanted in (r.lower() for r in envelope(m)[1])]

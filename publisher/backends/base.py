"""The one small interface every way of sending mail implements.

A backend is a context manager (entering opens what it needs, such as an SMTP
connection; leaving closes it) with one method, ``send``. What ``send`` raises
tells the caller what to record in the send ledger:

* returns: the message was accepted; mark it sent;
* :class:`~publisher.errors.TemporarySendError`: certainly not delivered, worth
  trying again in a later run (4xx replies, connection failures before the
  message was handed over, after the backend's own retries);
* :class:`~publisher.errors.PermanentSendError`: this recipient will not take
  it (5xx); record the failure and go on with the others;
* :class:`~publisher.errors.UncertainSendError`: the connection was lost after
  the whole message was handed over; it may have arrived, so it must not be
  retried automatically;
* :class:`~publisher.errors.SendError` itself (none of the above): the backend
  cannot work at all (TLS refused, login refused, server without STARTTLS):
  stop the run; every further message would fail the same way.
"""

from __future__ import annotations

import copy
import re
from email.message import EmailMessage
from email.utils import getaddresses
from types import TracebackType
from typing import Protocol, runtime_checkable

from publisher.errors import PermanentSendError

__all__ = ["Backend", "envelope", "wire_bytes"]


@runtime_checkable
class Backend(Protocol):
    """Hands messages over to something that delivers them (or stores them)."""

    name: str

    def __enter__(self) -> Backend: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, message: EmailMessage) -> None:
        """Deliver one message to every recipient in its To, Cc and Bcc headers."""
        ...


def _addresses(message: EmailMessage, *names: str) -> list[str]:
    values = [str(v) for name in names for v in message.get_all(name, [])]
    return [addr for _, addr in getaddresses(values) if addr]


def envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """The envelope sender and recipients of a message, read from its headers.

    The sender is the Sender header if present (it names who hands the message
    over), else the From address. Raises PermanentSendError when either is
    missing: no server would take such a message, now or later.
    """
    senders = _addresses(message, "Sender") or _addresses(message, "From")
    recipients = list(dict.fromkeys(_addresses(message, "To", "Cc", "Bcc")))
    if not recipients:
        raise PermanentSendError("message has no recipient (To, Cc or Bcc)")
    if not senders:
        raise PermanentSendError(f"{', '.join(recipients)}: message has no From address")
    return senders[0], recipients


_BARE_EOL = re.compile(rb"\r\n|\r|\n")


def wire_bytes(message: EmailMessage, linesep: str = "\r\n") -> bytes:
    """The message as it travels: CRLF line ends, Bcc removed (it is envelope-only).

    ``linesep="\n"`` gives the form Unix mail files use (mbox, Maildir, .eml).
    """
    if "Bcc" in message or "Resent-Bcc" in message:
        message = copy.copy(message)
        del message["Bcc"]
        del message["Resent-Bcc"]
    data = message.as_bytes(policy=message.policy.clone(linesep=linesep))
    if linesep == "\r\n" and b"\n" in data.replace(b"\r\n", b""):
        # A header or body built elsewhere may still carry bare LFs; SMTP needs CRLF.
        data = _BARE_EOL.sub(b"\r\n", data)
    return data

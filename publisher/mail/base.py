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

A backend whose ``send`` may be called from several threads at once says how
many with a ``concurrency`` attribute (the SMTP backend: ``smtp.connections``),
and may offer ``connect()`` to open a new thread's connection before it takes
any work; a sender uses one thread for any other backend.

A backend that hands messages over many at a time (an HTTP API's batch
endpoint) is a :class:`BatchBackend` too: ``send_batch`` takes up to
``batch_size`` messages and returns one :class:`Outcome` each, and raises
:class:`BatchStopped` (with the outcomes so far) when it cannot work at all.
A sender gives such a backend whole batches.

Pure: no I/O; nothing here sends a message, a backend does.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import getaddresses
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

from publisher.errors import PermanentSendError, SendError
from publisher.mail.prepared import PreparedMessage

__all__ = [
    "Backend",
    "BatchBackend",
    "BatchStopped",
    "Message",
    "Outcome",
    "PreparedMessage",
    "Status",
    "envelope",
    "wire_bytes",
]

# What a backend sends: a message object, or one already turned into bytes.
Message = EmailMessage | PreparedMessage

Status = Literal["sent", "failed", "retry", "uncertain"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message of a batch, for its ledger row.

    ``status``: ``sent`` (accepted; ``provider_id`` is the provider's id for
    it), ``failed`` (never worth sending again as it is), ``retry`` (certainly
    not accepted; try in a later run) or ``uncertain`` (may have been
    accepted; never retry automatically). ``error`` is one line for the
    ledger, ``code`` the provider's error code when it gave one (0 otherwise);
    ``gone``: the provider will never deliver to this address again (it
    bounced, complained or was suppressed there), so it is suppressed here too.
    """

    status: Status
    provider_id: str = ""
    error: str = ""
    code: int = 0
    gone: bool = False


class BatchStopped(SendError):
    """The backend cannot work at all (token refused, account may not send): stop the run.

    ``outcomes`` holds one outcome per message given to ``send_batch``: the
    real outcome of every request answered before the stop, and ``retry`` for
    the rest (none of them was accepted).
    """

    def __init__(self, message: str, outcomes: Sequence[Outcome] = ()) -> None:
        super().__init__(message)
        self.outcomes = list(outcomes)


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

    def send(self, message: Message) -> None:
        """Deliver one message to every recipient in its To, Cc and Bcc headers
        (a prepared message: to its envelope recipients)."""
        ...


@runtime_checkable
class BatchBackend(Backend, Protocol):
    """A backend that takes messages ``batch_size`` at a time (see the module docstring)."""

    batch_size: int

    def send_batch(self, messages: Sequence[Message]) -> list[Outcome]:
        """Hand ``messages`` over; one outcome each, in order."""
        ...


def _addresses(message: EmailMessage, *names: str) -> list[str]:
    wanted = {name.lower() for name in names}
    found: list[str] = []
    # raw_items() skips the policy's parsing on every read: reading an address
    # header through get_all() costs a fifth of a millisecond, on every message.
    for name, value in message.raw_items():
        if name.lower() not in wanted:
            continue
        parsed = getattr(value, "addresses", None)
        if parsed is not None:  # already parsed when it was set
            found.extend(a.addr_spec for a in parsed if a.username)
        else:
            found.extend(addr for _, addr in getaddresses([str(value)]) if addr)
    return found


def envelope(message: Message) -> tuple[str, list[str]]:
    """The envelope sender and recipients of a message, read from its headers.

    The sender is the Sender header if present (it names who hands the message
    over), else the From address; a prepared message carries its envelope.
    Raises PermanentSendError when either is missing: no server would take
    such a message, now or later.
    """
    if isinstance(message, PreparedMessage):
        senders = [message.sender] if message.sender else []
        recipients = list(dict.fromkeys(r for r in message.recipients if r))
    else:
        senders = _addresses(message, "Sender") or _addresses(message, "From")
        recipients = list(dict.fromkeys(_addresses(message, "To", "Cc", "Bcc")))
    if not recipients:
        raise PermanentSendError("message has no recipient (To, Cc or Bcc)")
    if not senders:
        raise PermanentSendError(f"{', '.join(recipients)}: message has no From address")
    return senders[0], recipients


_BARE_EOL = re.compile(rb"\r\n|\r|\n")
_ANY_EOL = re.compile(r"\r\n|\r|\n")


class _Generator(BytesGenerator):
    """The standard generator, writing each body part in one piece.

    The standard one writes a body line by line, two calls per line, which is
    half of the time it takes to turn a 30 KB digest into bytes, and every
    message of a run pays it. Replacing every line end at once gives the same
    bytes (tests compare the two on many kinds of message).
    """

    _NL: str  # the line end, set by flatten() from the policy

    def _write_lines(self, lines: str) -> None:
        if lines:
            self.write(_ANY_EOL.sub(self._NL, lines))


def wire_bytes(message: Message, linesep: str = "\r\n") -> bytes:
    r"""The message as it travels: CRLF line ends, Bcc removed (it is envelope-only).

    ``linesep="\n"`` gives the form Unix mail files use (mbox, Maildir, .eml).
    A prepared message comes in its 8-bit form (see :mod:`.prepared`).
    """
    if isinstance(message, PreparedMessage):
        return message.data(linesep=linesep)
    if "Bcc" in message or "Resent-Bcc" in message:
        message = copy.copy(message)
        del message["Bcc"]
        del message["Resent-Bcc"]
    out = io.BytesIO()
    policy = message.policy.clone(linesep=linesep)
    _Generator(out, mangle_from_=False, policy=policy).flatten(message, unixfrom=False)
    data = out.getvalue()
    if linesep == "\r\n" and data.count(b"\n") != data.count(b"\r\n"):
        # A raw header set elsewhere may still carry bare LFs; SMTP needs CRLF.
        data = _BARE_EOL.sub(b"\r\n", data)
    return data

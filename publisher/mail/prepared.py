"""A message already in the bytes it travels as, for senders that build them directly.

Building an ``EmailMessage`` and flattening it costs about a millisecond; a
digest run sends ten thousand messages that differ only in a few places, so
the digest builds their bytes itself (see :mod:`publisher.digest.message`) and
hands them to a backend in this envelope. Every backend takes it wherever it
takes an ``EmailMessage``.

The bytes come in two forms. The usual one may carry 8-bit text (parts with
``Content-Transfer-Encoding: 8bit``, lines of at most 998 octets), which is
shorter and has fewer lines than base64 or quoted-printable: a server that
announces 8BITMIME gets it. The 7-bit form, every part in base64, is made
only when a server without 8BITMIME asks for it.

Pure: no I/O; nothing here sends the bytes, a backend does.
"""

from __future__ import annotations

import email
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage

__all__ = ["PreparedMessage"]


@dataclass(frozen=True, eq=False)
class PreparedMessage:
    """A finished message: envelope, Message-ID and bytes (CRLF line ends)."""

    sender: str  # the envelope sender (MAIL FROM)
    recipients: tuple[str, ...]  # the envelope recipients (RCPT TO)
    message_id: str
    eight_bit: bytes  # the message; 8-bit parts allowed
    seven_bit: Callable[[], bytes] | None = None  # the 7-bit form; None: eight_bit is 7-bit

    def data(self, *, eight_bit: bool = True, linesep: str = "\r\n") -> bytes:
        r"""The bytes: as they are, or in 7-bit form; ``linesep="\n"`` for mail files."""
        data = self.eight_bit
        if not eight_bit and self.seven_bit is not None and not data.isascii():
            data = self.seven_bit()
        return data if linesep == "\r\n" else data.replace(b"\r\n", linesep.encode("ascii"))

    def as_email(self, *, eight_bit: bool = True) -> EmailMessage:
        """The message parsed back, to read its headers and parts (tests, previews)."""
        return email.message_from_bytes(
            self.data(eight_bit=eight_bit, linesep="\n"), policy=policy.default
        )

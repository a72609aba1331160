"""The digest as an email message: MIME structure and headers, straight to bytes.

``multipart/alternative`` with the text part first and the HTML part last
(clients show the last part they can display), UTF-8 bodies, and RFC 2047
encoded headers, so any server accepts it.

Bodies travel as ``8bit`` to a server that announces 8BITMIME: a third
shorter than base64 for Japanese, and far fewer lines, which is what a server
spends its time on: HTML lines are refilled up to about 800 octets (never past
998), joined and broken only where that changes nothing a reader sees (see
:mod:`publisher.digest.wrap`). Any other
server gets the same message in base64 (see
:class:`~publisher.mail.prepared.PreparedMessage`). A part that cannot be
8bit goes in base64 either way.

Building an ``EmailMessage`` and flattening it costs a millisecond a message,
so :class:`MessageBuilder` writes the bytes itself: the headers that are the
same for a whole run are folded once, and each distinct digest's parts are
made ready once (line ends, wrapping, UTF-8) with holes for the reader's
name, address and links; a message is then the reader's headers and a join.

Nothing from a post or the config can add a header: every header value is
checked for CR and LF before it is set (see :mod:`publisher.mail.headers`).

Mailbox providers want bulk mail to say which list it is and how to leave it
in one click: ``List-ID``, ``List-Unsubscribe`` (https, plus mailto when
``digest.unsubscribe_mailto`` is set) and ``List-Unsubscribe-Post`` (RFC 8058).
"""

from __future__ import annotations

import base64
import email
import re
import secrets
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

from publisher.config import Config
from publisher.digest.filling import DigestTemplate, Filling, Recipient, RenderedDigest
from publisher.digest.wrap import LIMIT, longest_line, reflow_html
from publisher.mail.headers import (
    POLICY,
    address_header,
    ascii_url,
    check_header,
    config_address,
    folded,
    list_id,
    sender,
    subject_header,
)
from publisher.mail.prepared import PreparedMessage

__all__ = ["MessageBuilder", "build_message"]


def _unsubscribe_links(config: Config, recipient: Recipient) -> list[str]:
    links = [f"<{ascii_url(recipient.unsubscribe_url)}>"]
    mailto = config.digest.unsubscribe_mailto.strip()
    if mailto:
        check_header("List-Unsubscribe", mailto)
        address = quote(mailto.removeprefix("mailto:"), safe="@+.-_")
        subject = quote(f"unsubscribe {recipient.unsubscribe_token}")
        links.append(f"<mailto:{address}?subject={subject}>")
    return [check_header("List-Unsubscribe", link) for link in links]


# --- bodies -------------------------------------------------------------------------------

_ANY_EOL = re.compile(r"\r\n|\r|\n")


def _crlf(text: str) -> str:
    return _ANY_EOL.sub("\r\n", text) if "\r" in text else text.replace("\n", "\r\n")


@dataclass(frozen=True, slots=True)
class _Part:
    """One text part as it travels: UTF-8 with CRLF line ends."""

    subtype: str  # "plain" or "html"
    data: bytes
    fits: bool  # no line is longer than 998 octets: it may go as 7bit/8bit

    def encoded(self, eight_bit: bool) -> bytes:
        """The part's headers and body, in 8bit (when allowed and asked for) or 7-bit form."""
        if self.fits and self.data.isascii():
            cte, body = "7bit", self.data
        elif self.fits and eight_bit:
            cte, body = "8bit", self.data
        else:
            # base64 rather than quoted-printable: as compact for Japanese, and
            # encoded in C instead of Python.
            cte, body = "base64", base64.encodebytes(self.data).replace(b"\n", b"\r\n")
        head = (
            f'Content-Type: text/{self.subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: {cte}\r\n\r\n"
        )
        return head.encode("ascii") + body


# Skeleton lines are filled to this length, leaving room on a line for a reader's values.
_ROOMY = 800


def _part(subtype: str, text: str) -> _Part:
    """A part from a whole text: the slow path, for digests rendered whole."""
    data = _crlf(text).encode("utf-8")
    if subtype == "html":
        refilled = reflow_html(data)
        if refilled is None:
            return _Part(subtype, data, False)
        data = refilled
    return _Part(subtype, data, longest_line(data) <= LIMIT)


@dataclass(frozen=True, slots=True)
class _Skeleton:
    """One part of a digest template, made ready once for every reader of it."""

    subtype: str
    pieces: tuple[bytes | str, ...]  # UTF-8 literals at even indexes, slot names at odd
    checks: tuple[tuple[int, tuple[str, ...]], ...]  # lines with slots: (other octets, slots)
    fits: bool  # every line without slots is short enough for 8bit

    @classmethod
    def make(cls, template: DigestTemplate, pieces: tuple[str, ...], subtype: str) -> _Skeleton:
        # Line ends and refilling on the text with its markers in place: markers
        # have no spaces, so refilling never cuts one, and the result cuts again.
        data = _crlf(template.marked(pieces)).encode("utf-8")
        fits = True
        if subtype == "html":
            refilled = reflow_html(data, _ROOMY) or reflow_html(data)
            fits = refilled is not None
            data = refilled or data
        cut = template.cut(data.decode("utf-8"))
        ready: list[bytes | str] = [
            piece if i % 2 else piece.encode("utf-8") for i, piece in enumerate(cut)
        ]
        # Which lines hold slots, and how long they are without them: a reader's
        # values can then be checked against the limit without looking at the text.
        checks: list[tuple[int, tuple[str, ...]]] = []
        octets, slots = 0, []
        for piece in ready:
            if isinstance(piece, str):
                slots.append(piece)
                continue
            lines = piece.split(b"\r\n")
            for j, line in enumerate(lines):
                octets += len(line)
                if j == len(lines) - 1:
                    break
                if slots:
                    checks.append((octets, tuple(slots)))
                elif octets > LIMIT:
                    fits = False
                octets, slots = 0, []
        if slots:
            checks.append((octets, tuple(slots)))
        elif octets > LIMIT:
            fits = False
        return cls(subtype, tuple(ready), tuple(checks), fits)

    def fill(self, values: dict[str, bytes]) -> _Part:
        out = list(self.pieces)
        for i in range(1, len(out), 2):
            out[i] = values[out[i]]  # type: ignore[index]
        data = b"".join(out)  # type: ignore[arg-type]
        fits = self.fits and all(
            octets + sum(len(values[slot]) for slot in slots) <= LIMIT
            for octets, slots in self.checks
        )
        if self.fits and not fits and self.subtype == "html":
            # A long value made a line too long: refill this reader's copy.
            refilled = reflow_html(data)
            if refilled is not None:
                data, fits = refilled, True
        return _Part(self.subtype, data, fits)


@dataclass(frozen=True, slots=True)
class _Ready:
    """A digest template's subject and parts, made ready once."""

    subject: str | None  # the subject, when no reader's value is in it
    text: _Skeleton
    html: _Skeleton


class MessageBuilder:
    """Builds each reader's digest as bytes; make one per run (sender threads may share it).

    Checks the sender and the run's constant headers when made: raises
    ConfigError for a missing or malformed From, PermanentSendError for a
    header value with a line break.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        from_value = sender(config)
        self._from = folded("From", from_value)
        addresses: tuple[Address, ...] = POLICY.header_factory("From", from_value).addresses
        self.envelope_sender = addresses[0].addr_spec  # sender() made sure there is one
        constant = [f"From:{self._from}\r\n"]
        if config.digest.reply_to:
            reply_to = config_address("digest.reply_to", config.digest.reply_to, config)
            constant.append(f"Reply-To:{folded('Reply-To', reply_to)}\r\n")
        self._before_to = "".join(constant)
        self._list_id = folded("List-ID", check_header("List-ID", list_id(config)))
        if config.digest.unsubscribe_mailto.strip():
            check_header("List-Unsubscribe", config.digest.unsubscribe_mailto.strip())
        self._boundary = "=_" + secrets.token_hex(16)
        self._ready: weakref.WeakKeyDictionary[DigestTemplate, _Ready] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _prepared(self, template: DigestTemplate) -> _Ready:
        with self._lock:
            ready = self._ready.get(template)
        if ready is None:
            subject = None
            if len(template.subject) == 1:
                subject = check_header("Subject", template.subject[0].strip())
            ready = _Ready(
                subject,
                _Skeleton.make(template, template.text, "plain"),
                _Skeleton.make(template, template.html, "html"),
            )
            with self._lock:
                self._ready[template] = ready
        return ready

    def _parts(self, content: Filling | RenderedDigest) -> tuple[str, _Part, _Part]:
        """The subject, text part and HTML part of one reader's digest."""
        if isinstance(content, Filling):
            values = content.values
            if not any("\r" in v or "\n" in v for v in values.values()):
                ready = self._prepared(content.template)
                subject = ready.subject or content.template.subject_for(content)
                plain = {slot: value.encode("utf-8") for slot, value in values.items()}
                html = {slot: value.encode("utf-8") for slot, value in content.html_values.items()}
                return subject, ready.text.fill(plain), ready.html.fill(html)
            content = content.rendered()  # a line break in a value: the slow path
        return content.subject, _part("plain", content.text), _part("html", content.html)

    def prepare(
        self,
        *,
        recipient: Recipient,
        content: Filling | RenderedDigest,
        message_id: str,
        now: datetime,
    ) -> PreparedMessage:
        """The finished message for one reader.

        Raises :class:`PermanentSendError` when a header value would carry a line break.
        """
        config = self.config
        to = address_header(recipient.name, recipient.email)
        subject, text, html = self._parts(content)
        check_header("Subject", subject)
        check_header("Message-ID", message_id)
        # Folded by hand: the default folding would turn a URL longer than a line
        # into RFC 2047 encoded words, which no client reads as a link.
        unsubscribe = ",\r\n ".join(_unsubscribe_links(config, recipient))
        boundary = self._boundary
        if boundary.encode("ascii") in text.data or boundary.encode("ascii") in html.data:
            boundary = "=_" + secrets.token_hex(16)  # never happens by chance; make sure
        head = (
            f"{self._before_to}"
            f"To:{to}\r\n"
            f"Subject:{subject_header(subject)}\r\n"
            f"Date: {format_datetime(now.astimezone(config.site.timezone))}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"List-ID:{self._list_id}\r\n"
            f"List-Unsubscribe: {unsubscribe}\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
            f"\r\n--{boundary}\r\n"
        ).encode("ascii")
        between = f"\r\n--{boundary}\r\n".encode("ascii")
        end = f"\r\n--{boundary}--\r\n".encode("ascii")

        def assemble(eight_bit: bool) -> bytes:
            return b"".join([head, text.encoded(eight_bit), between, html.encoded(eight_bit), end])

        return PreparedMessage(
            sender=self.envelope_sender,
            recipients=(recipient.email,),
            message_id=message_id,
            eight_bit=assemble(True),
            seven_bit=lambda: assemble(False),
        )


def build_message(
    config: Config,
    *,
    recipient: Recipient,
    rendered: RenderedDigest | Filling,
    message_id: str,
    now: datetime,
) -> EmailMessage:
    """The finished digest message for one recipient, as an ``EmailMessage`` in 7-bit form.

    For reading a message; sending uses :class:`MessageBuilder`, which is
    faster. Raises :class:`PermanentSendError` when a header value would carry
    a line break, and :class:`ConfigError` when the sender is missing or malformed.
    """
    prepared = MessageBuilder(config).prepare(
        recipient=recipient, content=rendered, message_id=message_id, now=now
    )
    message = email.message_from_bytes(prepared.data(eight_bit=False), policy=POLICY)
    assert isinstance(message, EmailMessage)
    return message

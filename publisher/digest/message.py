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
:class:`~publisher.backends.prepared.PreparedMessage`). A part that cannot be
8bit goes in base64 either way.

Building an ``EmailMessage`` and flattening it costs a millisecond a message,
so :class:`MessageBuilder` writes the bytes itself: the headers that are the
same for a whole run are folded once, and each distinct digest's parts are
made ready once (line ends, wrapping, UTF-8) with holes for the reader's
name, address and links; a message is then the reader's headers and a join.

Nothing from a post or the config can add a header: every header value is
checked for CR and LF before it is set, and refused with a message that names
the header.

Mailbox providers want bulk mail to say which list it is and how to leave it
in one click: ``List-ID``, ``List-Unsubscribe`` (https, plus mailto when
``digest.unsubscribe_mailto`` is set) and ``List-Unsubscribe-Post`` (RFC 8058).
The ``Message-ID`` is derived from (digest, subscriber), so a message resent
after an operator's decision is recognisably the same message.
"""

from __future__ import annotations

import base64
import email
import hashlib
import re
import secrets
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from urllib.parse import quote, urlsplit

from publisher.backends.prepared import PreparedMessage
from publisher.config import Config
from publisher.digest.render import DigestTemplate, Filling, Recipient, RenderedDigest
from publisher.digest.wrap import LIMIT, longest_line, reflow_html
from publisher.errors import ConfigError, PermanentSendError
from publisher.names import clean_name

__all__ = [
    "POLICY",
    "MessageBuilder",
    "address_header",
    "build_message",
    "check_header",
    "list_id",
    "mail_host",
    "make_message_id",
    "sender",
]

# CRLF line ends as SMTP wants them; headers are folded here, set raw and kept
# as folded. (Used to fold headers and to read a message back.)
POLICY = policy.SMTP.clone(cte_type="7bit", refold_source="none")


def check_header(name: str, value: str) -> str:
    """Return ``value`` if it is safe as the value of header ``name``; refuse CR and LF."""
    if "\r" in value or "\n" in value:
        shown = value.replace("\r", "\\r").replace("\n", "\\n")
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise PermanentSendError(
            f"{name}: refusing a header value with a line break (CR or LF): {shown!r}"
        )
    return value


def mail_host(config: Config) -> str:
    """The site's host name in ASCII (IDNA), for Message-IDs and List-IDs."""
    host = urlsplit(config.site.url).hostname or "localhost"
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return "localhost"


def make_message_id(config: Config, digest: str, subscriber_id: int) -> str:
    """A Message-ID that is the same every time for (site, digest, subscriber)."""
    seed = f"{config.site.url}\x00{digest}\x00{subscriber_id}".encode()
    unique = hashlib.blake2b(seed, digest_size=12).hexdigest()
    safe_digest = "".join(c if c.isalnum() or c in "-." else "-" for c in digest)
    return f"<digest.{safe_digest}.{unique}@{mail_host(config)}>"


def _phrase(text: str) -> str:
    """``text`` as an RFC 5322 display phrase, quoted when it holds specials."""
    if any(c in text for c in '()<>[]:;@\\,."'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def list_id(config: Config) -> str:
    """``digest.list_id``, or "<site title> <digest.host>"."""
    configured = config.digest.list_id.strip()
    if configured:
        return configured if "<" in configured else f"<{configured.strip('<>')}>"
    return f"{_phrase(config.site.title)} <digest.{mail_host(config)}>"


def _address(key: str, value: str, config: Config) -> str:
    """Check a From/Reply-To value from the config: one address, no line breaks."""
    check_header(key, value)
    header = POLICY.header_factory("From", value)
    addresses: tuple[Address, ...] = tuple(getattr(header, "addresses", ()))
    if len(addresses) != 1 or "@" not in addresses[0].addr_spec or header.defects:
        raise ConfigError(
            [f"{key}: must be one email address such as 'Site <news@example.com>', got {value!r}"],
            str(config.source or "config.yaml"),
        )
    return value


def sender(config: Config) -> str:
    """The From address; ConfigError when none is configured."""
    if not config.digest.sender:
        raise ConfigError(
            ["digest.from: is required to send digests (or set site.email)"],
            str(config.source or "config.yaml"),
        )
    return _address("digest.from", config.digest.sender, config)


_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


def _ascii_url(url: str) -> str:
    """``url`` with an IDNA host and a percent-encoded path, as a header may carry it."""
    if _PLAIN_URL.fullmatch(url):
        return url  # already ASCII and safe, as the links of an ASCII site are
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = quote(host)
    netloc = parts.netloc.replace(host, ascii_host) if host else parts.netloc
    path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")
    return parts._replace(netloc=netloc, path=path).geturl()


def _unsubscribe_links(config: Config, recipient: Recipient) -> list[str]:
    links = [f"<{_ascii_url(recipient.unsubscribe_url)}>"]
    mailto = config.digest.unsubscribe_mailto.strip()
    if mailto:
        check_header("List-Unsubscribe", mailto)
        address = quote(mailto.removeprefix("mailto:"), safe="@+.-_")
        subject = quote(f"unsubscribe {recipient.unsubscribe_token}")
        links.append(f"<mailto:{address}?subject={subject}>")
    return [check_header("List-Unsubscribe", link) for link in links]


def _fold(name: str, value: str) -> str:
    """``value`` folded and RFC 2047-encoded as header ``name`` carries it: what follows
    ``name:``, starting with a space, or with a fold when the first word is long."""
    line: str = POLICY.header_factory(name, value).fold(policy=POLICY)
    return line[len(name) + 1 : -len(POLICY.linesep)]


# The header registry parses and folds a value in about a tenth of a millisecond;
# From, Reply-To, List-ID and usually the Subject are the same for a whole run.
_folded = lru_cache(maxsize=1024)(_fold)

# A display name that needs neither quotes nor encoding: atoms and single spaces.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Octets per RFC 2047 word: base64 makes 60 characters of them, 72 with "=?utf-8?b?" and
# "?=", so "To: " and one word stay within 78 characters.
_WORD_OCTETS = 45


def _encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 "B" encoded words, never splitting a character between two."""
    chunks: list[bytes] = []
    current = b""
    for char in text:
        octets = char.encode("utf-8")
        if current and len(current) + len(octets) > _WORD_OCTETS:
            chunks.append(current)
            current = b""
        current += octets
    chunks.append(current)
    return ["=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=" for chunk in chunks]


def address_header(name: str, address: str) -> str:
    """A To header for ``name <address>``, folded, as it follows ``To:``.

    Written here rather than by the mail library, which is ten times slower
    and unsafe with hostile names: it decodes encoded words while it parses,
    and drops a display name's quotes when it folds a long one, so that
    ``"Hi Bcc: x@example.com"`` becomes a group holding another address.

    The name is cleaned first (:func:`~publisher.names.clean_name`: no control
    characters, encoded words decoded). Plain words go as they are, ASCII
    with specials as quoted strings, and anything else (non-ASCII, or still
    reading like an encoded word) as RFC 2047 encoded words, so that a mail
    program shows the name as typed. Raises
    :class:`PermanentSendError` for an address that cannot be a header's.
    """
    name = clean_name(name)
    check_header("To", address)
    if not address.isascii() or address.count("@") != 1 or any(c in address for c in " <>,;"):
        raise PermanentSendError(f"To: {address!r} is not an address a header can carry")
    if not name:
        words = []
    elif name.isascii() and "=?" not in name and len(name) <= 60:
        words = [name if _ATOMS.fullmatch(name) else _quoted(name)]
    elif name.isascii() and "=?" not in name and max(map(len, name.split(" "))) <= 900:
        # A long name as a phrase of words, each an atom or quoted, folded between them
        # (a very long word gets a line of its own: within 998 octets, as RFC 5322 allows).
        words = [w if _ATOMS.fullmatch(w) else _quoted(w) for w in name.split(" ")]
    else:
        words = _encoded_words(name)
    lines: list[str] = []
    line = "To:"
    for word in [*words, f"<{address}>" if words else address]:
        if len(line) + 1 + len(word) > 78 and line != "To:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines)[len("To:") :]


def _quoted(text: str) -> str:
    """``text`` as an RFC 5322 quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        self._from = _folded("From", from_value)
        addresses: tuple[Address, ...] = POLICY.header_factory("From", from_value).addresses
        self.envelope_sender = addresses[0].addr_spec  # sender() made sure there is one
        constant = [f"From:{self._from}\r\n"]
        if config.digest.reply_to:
            reply_to = _address("digest.reply_to", config.digest.reply_to, config)
            constant.append(f"Reply-To:{_folded('Reply-To', reply_to)}\r\n")
        self._before_to = "".join(constant)
        self._list_id = _folded("List-ID", check_header("List-ID", list_id(config)))
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
            f"Subject:{_folded('Subject', subject)}\r\n"
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

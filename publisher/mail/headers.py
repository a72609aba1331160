"""Mail headers made safe: folded, RFC 2047 encoded, never carrying a line break.

Shared by every message publisher sends (digests and confirmations). Nothing
from a post, a subscriber or the config can add a header: every value is
checked for CR and LF before it is set and refused with a message that names
the header, and display names are cleaned (:mod:`publisher.mail.names`) and
written here, not by the mail library (see :func:`address_header`).

The ``Message-ID`` is derived from (site, digest, subscriber), so a message
resent after an operator's decision is recognisably the same message.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from email import policy
from email.headerregistry import Address
from functools import lru_cache
from urllib.parse import quote, urlsplit

from publisher.config import Config
from publisher.errors import ConfigError, PermanentSendError
from publisher.mail.names import clean_name

__all__ = [
    "POLICY",
    "address_header",
    "ascii_url",
    "check_header",
    "config_address",
    "fold",
    "folded",
    "list_id",
    "mail_host",
    "make_message_id",
    "sender",
    "subject_header",
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


def config_address(key: str, value: str, config: Config) -> str:
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
    return config_address("digest.from", config.digest.sender, config)


_PLAIN_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


def ascii_url(url: str) -> str:
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


# A line break that is not a fold (CRLF and a blank): it would end the header.
_BREAK = re.compile(r"\r\n(?![ \t])|\r(?!\n)|(?<!\r)\n")


def fold(name: str, value: str) -> str:
    """``value`` folded and RFC 2047-encoded as header ``name`` carries it: what follows
    ``name:``, starting with a space, or with a fold when the first word is long.

    The mail library decodes encoded words while it parses, so a value holding
    ``=?utf-8?q?a=0D=0A...?=`` could come out with a real line break: a folded
    value with any break but a fold is refused (:class:`PermanentSendError`).
    """
    line: str = POLICY.header_factory(name, value).fold(policy=POLICY)
    result = line[len(name) + 1 : -len(POLICY.linesep)]
    if _BREAK.search(result):
        raise PermanentSendError(f"{name}: refusing a header that would break the line")
    return result


# The header registry parses and folds a value in about a tenth of a millisecond;
# From, Reply-To, List-ID and usually the Subject are the same for a whole run.
folded = lru_cache(maxsize=1024)(fold)

# A display name that needs neither quotes nor encoding: atoms and single spaces.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# Octets per RFC 2047 word: base64 makes 60 characters of them, 72 with "=?utf-8?b?" and
# "?=", so "To: " and one word stay within 78 characters.
_WORD_OCTETS = 45


def _encoded_words(text: str, limit: int = _WORD_OCTETS) -> list[str]:
    """``text`` as RFC 2047 "B" encoded words of at most ``limit`` octets each, never
    splitting a character between two."""
    chunks: list[bytes] = []
    current = b""
    for char in text:
        octets = char.encode("utf-8")
        if current and len(current) + len(octets) > limit:
            chunks.append(current)
            current = b""
        current += octets
    chunks.append(current)
    return ["=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=" for chunk in chunks]


def subject_header(value: str) -> str:
    """A Subject header's value, folded, as it follows ``Subject:``; refuses CR and LF.

    Text holding ``=?`` (a post title about encoded words, or one hiding a line
    break in one) is written here as RFC 2047 encoded words, so that no mail
    program decodes it into something else; any other text is folded by the
    library, which then has nothing to decode.
    """
    check_header("Subject", value)
    if "=?" not in value:
        return folded("Subject", value)
    # 42 octets make a word of 68 characters: "Subject: " and one word stay within 78.
    return _fold_words("Subject", _encoded_words(value, 42))


def _fold_words(name: str, words: list[str]) -> str:
    """``words`` joined by blanks, folded before a word that would pass 78 characters."""
    lines: list[str] = []
    line = f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > 78 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines)[len(name) + 1 :]


def address_header(name: str, address: str) -> str:
    """A To header for ``name <address>``, folded, as it follows ``To:``.

    Written here rather than by the mail library, which is ten times slower
    and unsafe with hostile names: it decodes encoded words while it parses,
    and drops a display name's quotes when it folds a long one, so that
    ``"Hi Bcc: x@example.com"`` becomes a group holding another address.

    The name is cleaned first (:func:`~publisher.mail.names.clean_name`: no control
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
    return _fold_words("To", [*words, f"<{address}>" if words else address])


def _quoted(text: str) -> str:
    """``text`` as an RFC 5322 quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

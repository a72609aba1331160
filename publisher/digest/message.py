"""The digest as an email message: MIME structure and headers.

``multipart/alternative`` with the text part first and the HTML part last
(clients show the last part they can display), UTF-8 bodies in a 7-bit-safe
transfer encoding, and RFC 2047 encoded headers, so any server accepts it.

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

import hashlib
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from urllib.parse import quote, urlsplit

from publisher.config import Config
from publisher.digest.render import Recipient, RenderedDigest
from publisher.errors import ConfigError, PermanentSendError

__all__ = ["POLICY", "build_message", "check_header", "list_id", "make_message_id", "sender"]

# CRLF line ends as SMTP wants them; never 8bit bodies, which a server without
# 8BITMIME would mangle. Headers are folded here and set raw, and kept as folded.
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


def _host(config: Config) -> str:
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
    return f"<digest.{safe_digest}.{unique}@{_host(config)}>"


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
    return f"{_phrase(config.site.title)} <digest.{_host(config)}>"


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


def _ascii_url(url: str) -> str:
    """``url`` with an IDNA host and a percent-encoded path, as a header may carry it."""
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
    """``value`` folded and RFC 2047-encoded as header ``name`` carries it, without the name."""
    line: str = POLICY.header_factory(name, value).fold(policy=POLICY)
    return line[len(name) + 2 : -len(POLICY.linesep)]


# The header registry parses and folds a value in about a tenth of a millisecond;
# From, Reply-To, List-ID and usually the Subject are the same for a whole run.
_folded = lru_cache(maxsize=1024)(_fold)


def build_message(
    config: Config,
    *,
    recipient: Recipient,
    rendered: RenderedDigest,
    message_id: str,
    now: datetime,
) -> EmailMessage:
    """The finished digest message for one recipient.

    Raises :class:`PermanentSendError` when a header value would carry a line
    break, and :class:`ConfigError` when the sender is missing or malformed.
    """
    headers: list[tuple[str, str]] = [("From", _folded("From", sender(config)))]
    if config.digest.reply_to:
        reply_to = _address("digest.reply_to", config.digest.reply_to, config)
        headers.append(("Reply-To", _folded("Reply-To", reply_to)))
    check_header("To", recipient.name)
    check_header("To", recipient.email)
    username, _, domain = recipient.email.rpartition("@")
    to = Address(display_name=recipient.name, username=username, domain=domain)
    headers += [
        ("To", _fold("To", str(to))),
        ("Subject", _folded("Subject", check_header("Subject", rendered.subject))),
        ("Date", format_datetime(now.astimezone(config.site.timezone))),
        ("Message-ID", check_header("Message-ID", message_id)),
        ("List-ID", _folded("List-ID", check_header("List-ID", list_id(config)))),
        # Folded by hand: the default folding would turn a URL longer than a line
        # into RFC 2047 encoded words, which no client reads as a link.
        ("List-Unsubscribe", ",\r\n ".join(_unsubscribe_links(config, recipient))),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    message = EmailMessage(policy=POLICY)
    for name, value in headers:
        message.set_raw(name, value)
    # base64 rather than quoted-printable: as compact for Japanese, and encoded in
    # C instead of Python, which matters at ten thousand messages.
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="base64")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="base64")
    return message

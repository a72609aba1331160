"""DKIM signatures on every outgoing message, for the inboxes that demand them.

Since February 2024 Gmail and Yahoo reject or spam-folder bulk mail that is not
DKIM-signed with the From domain. With ``dkim.selector`` set, :func:`signing`
wraps the configured backend so that every message it hands over (digests and
confirmations, whatever the backend) carries a ``DKIM-Signature`` made with
dkimpy: relaxed/relaxed canonicalization, RSA-SHA256 for an RSA key in PEM,
Ed25519-SHA256 for an Ed25519 key (the base64 of its 32-byte seed, as
dkimpy's ``dknewkey --ktype ed25519`` writes it).

A message is signed in the very bytes it travels as: a prepared digest in its
8-bit form, and its 7-bit form (made only for a server without 8BITMIME) signed
on its own when it is made. The key is read when the backend is made; a key
that is missing or cannot be read is one :class:`~publisher.errors.ConfigError`
line.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from email.utils import parseaddr
from types import TracebackType
from typing import TYPE_CHECKING, Any

from publisher.errors import ConfigError
from publisher.mail.base import Backend, Message, envelope, wire_bytes
from publisher.mail.prepared import PreparedMessage

if TYPE_CHECKING:
    from publisher.config import Config

__all__ = ["SIGNED_HEADERS", "DkimSigner", "SigningBackend", "signing"]

#: Signed when present; listed even when absent, so that none can be added on the way.
SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
    b"Content-Transfer-Encoding",
)


class DkimSigner:
    """Signs message bytes (CRLF line ends) for one selector and domain."""

    def __init__(self, selector: str, domain: str, key: bytes) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("idna")
        self.key = key
        self.algorithm = b"rsa-sha256" if b"PRIVATE KEY" in key else b"ed25519-sha256"

    def sign(self, data: bytes) -> bytes:
        """``data`` with its DKIM-Signature header first."""
        import dkim  # only a site that signs pays for the import

        header = dkim.sign(
            data,
            self.selector,
            self.domain,
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=self.algorithm,
            include_headers=list(SIGNED_HEADERS),
        )
        return bytes(header) + data

    def signed(self, message: Message) -> PreparedMessage:
        """``message`` as a prepared message whose every form is signed."""
        sender, recipients = envelope(message)
        if isinstance(message, PreparedMessage):
            seven_bit: Callable[[], bytes] | None = None
            if message.seven_bit is not None:
                made = message  # named again: a closure does not keep isinstance's narrowing

                def seven_bit() -> bytes:
                    return self.sign(made.data(eight_bit=False))

            return PreparedMessage(
                sender,
                tuple(recipients),
                message.message_id,
                self.sign(message.data()),
                seven_bit,
            )
        return PreparedMessage(
            sender,
            tuple(recipients),
            str(message.get("Message-ID", "")),
            self.sign(wire_bytes(message)),
        )


class SigningBackend:
    """A backend that signs each message, then hands it to the one it wraps."""

    def __init__(self, inner: Backend, signer: DkimSigner) -> None:
        self.inner = inner
        self.signer = signer
        self.name = inner.name

    def __getattr__(self, name: str) -> Any:
        # concurrency, connect(), written, sent ...: the wrapped backend's.
        return getattr(self.inner, name)

    def __enter__(self) -> SigningBackend:
        self.inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.inner.__exit__(exc_type, exc, tb)

    def send(self, message: Message) -> None:
        self.inner.send(self.signer.signed(message))


def _key(config: Config) -> bytes:
    dkim = config.dkim
    if dkim.key_file is not None:
        try:
            key = dkim.key_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                [f"dkim.key_file: cannot read {dkim.key_file}: {exc.strerror or exc}"]
            ) from None
        where = f"dkim.key_file: {dkim.key_file}"
    else:
        from publisher.config import secret_from_env

        value = secret_from_env(dkim.key_env)
        if value is None:
            raise ConfigError(
                [f"dkim.key_env: environment variable {dkim.key_env} is not set"]
            ) from None
        key = value.encode("utf-8")
        where = f"dkim.key_env: {dkim.key_env}"
    key = key.strip()
    if b"PRIVATE KEY" not in key:
        try:
            if len(base64.b64decode(key, validate=True)) != 32:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ConfigError(
                [f"{where}: not a PEM RSA key nor the base64 of an Ed25519 seed"]
            ) from None
    return key


def signing(config: Config, backend: Backend) -> Backend:
    """``backend``, signing every message when ``dkim.selector`` is set."""
    if not config.dkim.selector:
        return backend
    domain = config.dkim.domain or parseaddr(config.digest.sender)[1].rpartition("@")[2]
    if not domain:
        raise ConfigError(
            ["dkim.domain: not given, and digest.from has no address to take it from"]
        )
    return SigningBackend(backend, DkimSigner(config.dkim.selector, domain, _key(config)))

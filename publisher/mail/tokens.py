"""Signed tokens for the links in every email: unsubscribe, preferences, confirm.

A token names a subscriber by id and is signed with HMAC-SHA256 over its
version, purpose and id, keyed by a secret that lives only in the environment
(``store.secret_env``, default ``PUBLISHER_SECRET``). Binding the purpose in
means a "confirm" link can never be replayed as an "unsubscribe" one; the
version prefix lets the format change later without breaking links already in
inboxes. Signatures are compared in constant time, so response timing reveals
nothing about the expected value.

Format: ``v1.<subscriber id>.<base64url signature>``; URL-safe as it stands.

What it must never do: accept a token made for another purpose, or say in an error
what the right signature would be.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from publisher.config import Config, secret_from_env
from publisher.errors import ConfigError, TokenError

__all__ = ["PURPOSES", "load_secret", "make_token", "verify_token"]

PURPOSES = ("unsubscribe", "preferences", "confirm")
_VERSION = "v1"
# Far longer than any real token; refusing early keeps junk input cheap.
_MAX_LENGTH = 128


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; expected one of {PURPOSES}")


def _signature(secret: bytes, version: str, subscriber_id: int, purpose: str) -> str:
    message = f"publisher:{version}:{purpose}:{subscriber_id}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_token(secret: bytes, subscriber_id: int, purpose: str) -> str:
    """A URL-safe token that proves the link was made for ``subscriber_id`` and ``purpose``."""
    _check_purpose(purpose)
    if not secret:
        raise ValueError("the token secret is empty")
    if isinstance(subscriber_id, bool) or not isinstance(subscriber_id, int) or subscriber_id < 0:
        raise ValueError(f"subscriber id must be a non-negative integer, got {subscriber_id!r}")
    return f"{_VERSION}.{subscriber_id}.{_signature(secret, _VERSION, subscriber_id, purpose)}"


def verify_token(secret: bytes, token: str, purpose: str) -> int:
    """Return the subscriber id ``token`` was made for, or raise :class:`TokenError`.

    Forged, altered, truncated, wrong-purpose and unknown-version tokens are all
    refused; the message says which, but never what the right value would be.
    """
    _check_purpose(purpose)
    if not secret:
        raise ValueError("the token secret is empty")
    if not isinstance(token, str) or not token or len(token) > _MAX_LENGTH or not token.isascii():
        raise TokenError("invalid link: malformed token")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("invalid link: malformed token")
    version, id_text, signature = parts
    if version != _VERSION:
        raise TokenError("invalid link: unknown token version")
    # Only the canonical spelling of an id is accepted, so each (id, purpose)
    # has exactly one valid token.
    if not id_text.isdigit() or (len(id_text) > 1 and id_text[0] == "0") or len(id_text) > 18:
        raise TokenError("invalid link: malformed token")
    subscriber_id = int(id_text)
    expected = _signature(secret, version, subscriber_id, purpose)
    if not hmac.compare_digest(expected, signature):
        raise TokenError("invalid link: the token is not valid for this purpose")
    return subscriber_id


def load_secret(config: Config) -> bytes:
    """The signing secret from the environment variable named by ``store.secret_env``.

    Raises :class:`ConfigError` naming the variable when it is unset or empty.
    """
    name = config.store.secret_env
    value = secret_from_env(name)
    if value is None:
        raise ConfigError(
            [
                "is not set; it holds the secret that signs unsubscribe links "
                "(store.secret_env). Set it to a long random string, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            ],
            f"environment variable {name}",
        )
    return value.encode("utf-8")

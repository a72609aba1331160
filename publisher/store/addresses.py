"""What a subscriber gives: email addresses and category names, checked and normalised.

An address is validated (RFC 5321/5322 dot-atom, IDNA domains), normalised
(domain lowercased) and turned into its lookup key (lowercased entirely);
category names are cleaned. Pure: no I/O, no database; errors are
:class:`~publisher.errors.StoreError` with a message naming the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from publisher.errors import StoreError

__all__ = ["clean_categories", "email_key", "email_problem", "normalize_email", "one_line"]

# RFC 5321/5322 dot-atom local part (no quoted strings, no comments): what every
# mail system accepts. Internationalised domains are stored as IDNA (punycode).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})")


def _split_email(text: str) -> tuple[str, str] | str:
    """Return (local, ascii lowercase domain), or the reason ``text`` is not an address."""
    if not text:
        return "is empty"
    if any(c in text for c in "\r\n\x00"):
        return "must not contain line breaks"
    if any(c.isspace() for c in text):
        return "must not contain spaces"
    if text.count("@") != 1:
        return "must contain exactly one '@'"
    local, domain = text.split("@")
    if not local:
        return "has nothing before the '@'"
    if not domain:
        return "has no domain after the '@'"
    if len(local) > 64:
        return "has more than 64 characters before the '@'"
    if not _LOCAL.fullmatch(local):
        return f"has an invalid part before the '@': {local!r}"
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return f"has an invalid domain: {domain!r}"
    labels = domain.split(".")
    if len(labels) < 2:
        return f"domain {domain!r} has no dot"
    if len(domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return f"has an invalid domain: {domain!r}"
    if not _TLD.fullmatch(labels[-1]):
        return f"domain {domain!r} does not end in a top-level domain"
    if len(local) + 1 + len(domain) > 254:
        return "is longer than 254 characters"
    return local, domain


def email_problem(text: str) -> str | None:
    """Say what is wrong with ``text`` as an email address, or None if it is usable."""
    parts = _split_email(text.strip())
    return parts if isinstance(parts, str) else None


def normalize_email(text: str) -> str:
    """Return the address with surrounding spaces removed and the domain lowercased.

    Raises StoreError("<text>: <what is wrong>") for an unusable address.
    """
    parts = _split_email(text.strip())
    if isinstance(parts, str):
        raise StoreError(f"{text.strip()!r}: not a valid email address: {parts}")
    return f"{parts[0]}@{parts[1]}"


def email_key(email: str) -> str:
    """The lookup key of an address: normalized, then lowercased entirely.

    Mailboxes differing only in the case of the local part are the same person
    everywhere that matters, so they may not subscribe twice.
    """
    try:
        return normalize_email(email).lower()
    except StoreError:
        return email.strip().lower()


def one_line(value: str, what: str, limit: int) -> str:
    """``value`` stripped; StoreError if it holds a line break or is longer than ``limit``."""
    text = value.strip()
    if any(c in text for c in "\r\n\x00"):
        raise StoreError(f"{what} {text!r}: must be one line")
    if len(text) > limit:
        raise StoreError(f"{what} {text[:20]!r}...: longer than {limit} characters")
    return text


def clean_categories(categories: Iterable[str]) -> tuple[str, ...]:
    """Strip, drop empty and repeated names, keep the order given."""
    seen: dict[str, None] = {}
    for raw in categories:
        name = one_line(str(raw), "category", 200)
        if name:
            seen[name] = None
    return tuple(seen)

"""Refusing cross-site form posts: a signed form token and the browser's own headers.

Every form carries a token that is an HMAC of what the form is for (its
purpose and the page's link token) and when it was made. Nothing is stored on
the server and no cookie is needed, so the token works for a reader whose
browser refuses cookies, and a token made for one form or one subscriber is
useless for another. It expires after :data:`LIFETIME`.

Browsers also say where a post comes from: ``Sec-Fetch-Site`` (modern ones)
and ``Origin``. A cross-site value is refused outright. ``Origin: null`` is
*not* taken as cross-site: the pages send ``Referrer-Policy: no-referrer`` so
that link tokens never leak, and under that policy browsers send
``Origin: null`` even for a form on the same site; the signed token decides.

Pure functions: the caller passes the secret, the time and the headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from urllib.parse import urlsplit

__all__ = ["LIFETIME", "check_csrf", "cross_site_problem", "make_csrf", "origin_of"]

LIFETIME = timedelta(hours=24)
# A clock a little behind the one that made the token must still accept it.
_SKEW = timedelta(minutes=5)
_VERSION = "c1"


def _key(secret: bytes) -> bytes:
    # Its own key, derived from the site secret, so that no form token can ever
    # be taken for a link token or the other way round.
    return hmac.new(secret, b"publisher:csrf-key", hashlib.sha256).digest()


def _mac(secret: bytes, binding: str, stamp: int) -> str:
    message = f"{_VERSION}:{stamp}:{binding}".encode()
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_csrf(secret: bytes, binding: str, now: datetime) -> str:
    """A form token for ``binding`` (e.g. ``"unsubscribe:<link token>"``), made at ``now``."""
    stamp = int(now.timestamp())
    return f"{_VERSION}.{stamp}.{_mac(secret, binding, stamp)}"


def check_csrf(secret: bytes, binding: str, token: str, now: datetime) -> str | None:
    """Why ``token`` is not a valid form token for ``binding`` at ``now``, or None if it is."""
    parts = token.split(".") if len(token) < 200 else []
    if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit():
        return "missing or malformed form token"
    stamp = int(parts[1])
    if not hmac.compare_digest(_mac(secret, binding, stamp), parts[2]):
        return "form token made for another form"
    made = datetime.fromtimestamp(stamp, now.tzinfo)
    if made > now + _SKEW:
        return "form token from the future"
    if now - made > LIFETIME:
        return "form token expired"
    return None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lowercased, as browsers send it in Origin."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site_problem(headers: Mapping[str, str], allowed: Iterable[str]) -> str | None:
    """Why the browser's headers show a cross-site post, or None when they do not.

    ``headers`` has lowercase names; ``allowed`` holds the origins this app is
    reached at (its public base URL and the address the request came to).
    """
    fetch_site = headers.get("sec-fetch-site", "").strip().lower()
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site}"
    origin = headers.get("origin", "").strip().lower()
    if origin and origin != "null" and origin not in {a.lower() for a in allowed}:
        return f"Origin {origin} is not this site"
    return None

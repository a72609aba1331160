"""A return path per message (VERP), so that every bounce names its ledger row.

With ``digest.bounce_address: bounces@example.com`` each digest goes out with
the envelope sender ``bounces+<row>-<signature>@example.com``: a bounce comes
back to that address, and :func:`row_of` tells which ledger row (one
subscriber, one message) it is about, without guessing from the bounce's text.
The signature (an HMAC of the row id with the link secret, 80 bits) keeps a
forged bounce from naming rows; it is lower-case base32 because mail servers
may change the case of a local part.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["return_path", "row_of"]


def _signature(secret: bytes, row_id: int) -> str:
    digest = hmac.new(secret, f"publisher:bounce:{row_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def return_path(secret: bytes, bounce_address: str, row_id: int) -> str:
    """The envelope sender of the message of ledger row ``row_id``."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{row_id}-{_signature(secret, row_id)}@{domain}"


def row_of(secret: bytes, address: str, bounce_address: str) -> int | None:
    """The ledger row a bounce to ``address`` is about; None if it names none (or is forged)."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    base_local, _, base_domain = bounce_address.rpartition("@")
    prefix = base_local.lower() + "+"
    if domain.lower() != base_domain.lower() or not local.lower().startswith(prefix):
        return None
    row, _, signature = local[len(prefix) :].partition("-")
    if not row.isascii() or not row.isdigit() or len(row) > 10:
        return None
    row_id = int(row)
    if not hmac.compare_digest(signature.lower(), _signature(secret, row_id)):
        return None
    return row_id

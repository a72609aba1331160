"""What a bounce or complaint does to the store, wherever it came from.

A bounce read from the bounce mailbox (``publisher bounces scan``) and one a
provider posts to a webhook (``publisher serve``) are applied alike: the
message it is about is found by its VERP return path when it has one (which
gives the ledger row, so the subscriber and the period), else the address the
report names is taken; a hard bounce or a complaint suppresses the address at
once, a soft one counts towards ``bounces.soft_limit``; and the event is noted
with its period for ``digest status``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from publisher.config import Config
from publisher.mail.verp import row_of
from publisher.store import Store

__all__ = ["Applied", "apply_bounce"]


@dataclass(frozen=True)
class Applied:
    """What applying one bounce did."""

    email: str
    period: str | None  # the period of the message it is about, when known
    suppressed: bool  # the address is suppressed by this bounce


def apply_bounce(
    config: Config,
    store: Store,
    secret: bytes | None,
    *,
    kind: str,
    recipient: str,
    reason: str,
    return_paths: Iterable[str],
    now: datetime,
) -> Applied | None:
    """Apply a bounce (``kind``: hard, soft or complaint); None if it names nobody."""
    email, period = recipient, None
    base = config.digest.bounce_address
    if secret is not None and base:
        for path in return_paths:
            row_id = row_of(secret, path, base)
            row = store.get_ledger_row(row_id) if row_id is not None else None
            if row is not None:
                email, period = row.email, row.digest
                break
    if not email:
        return None
    if kind == "soft":
        limits = config.bounces
        made = store.soft_bounce(
            email, reason, now=now, limit=limits.soft_limit, window=limits.window
        )
        suppressed = made is not None
    else:
        store.suppress(email, "complained" if kind == "complaint" else "bounced", reason, now=now)
        suppressed = True
    store.record_bounce(email, kind, reason, digest=period, now=now)
    return Applied(email, period, suppressed)

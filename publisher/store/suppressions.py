"""Suppressed addresses: hard bounces and complaints, and soft bounces counted to a limit.

Gmail and Yahoo block a sender that keeps mailing dead addresses or draws
complaints. A hard bounce or a complaint suppresses its address at once: the
subscriber (if there is one) takes the status ``bounced`` or ``complained``,
which no send path mails, and the address, reason and time are kept in a table
of their own, so that removing the subscriber does not forget them and an
import does not bring them back without ``force``. Soft bounces are counted:
``limit`` of them within ``window`` since the address's last delivered
message suppress it as a hard bounce would. Each operation is one transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from publisher.store.addresses import email_key, normalize_email
from publisher.store.database import Conflict, Database
from publisher.store.schema import (
    bounce_events_table,
    ledger_table,
    soft_bounces_table,
    subscribers_table,
    suppressions_table,
    webhook_seen_table,
)
from publisher.store.values import SUPPRESSED_STATUSES, Suppression, check_choice

__all__ = ["SuppressionOps"]


def _as_suppression(row: sa.Row[object]) -> Suppression:
    m = row._mapping
    return Suppression(email=m["email"], kind=m["kind"], reason=m["reason"], at=m["at"])


class SuppressionOps(Database):
    """Which addresses are sent nothing more, and the soft bounces on the way there."""

    def suppress(self, email: str, kind: str, reason: str, *, now: datetime) -> Suppression:
        """Suppress ``email`` for a hard bounce or a complaint (kept: the first reason)."""
        check_choice(kind, SUPPRESSED_STATUSES, "suppression")
        address = normalize_email(email)
        key = email_key(address)
        with self._tx(write=True) as conn:
            found = conn.execute(
                sa.select(suppressions_table).where(suppressions_table.c.email_key == key)
            ).first()
            if found is None:
                conn.execute(
                    suppressions_table.insert().values(
                        email_key=key, email=address, kind=kind, reason=reason[:2000], at=now
                    )
                )
            elif kind == "complained" and found._mapping["kind"] != kind:
                # A complaint outweighs a bounce: it is what the inbox providers count.
                conn.execute(
                    suppressions_table.update()
                    .where(suppressions_table.c.email_key == key)
                    .values(kind=kind, reason=reason[:2000], at=now)
                )
            conn.execute(
                subscribers_table.update()
                .where(subscribers_table.c.email_key == key)
                .where(subscribers_table.c.status != "complained")
                .values(status=kind, updated_at=now)
            )
            row = conn.execute(
                sa.select(suppressions_table).where(suppressions_table.c.email_key == key)
            ).one()
        return _as_suppression(row)

    def record_bounce(
        self, email: str, kind: str, reason: str, *, digest: str | None, now: datetime
    ) -> None:
        """Note a bounce or complaint (``kind``: hard, soft, complaint) of period ``digest``."""
        check_choice(kind, ("hard", "soft", "complaint"), "bounce")
        with self._tx(write=True) as conn:
            conn.execute(
                bounce_events_table.insert().values(
                    digest=digest,
                    email=normalize_email(email),
                    kind=kind,
                    reason=reason[:2000],
                    at=now,
                )
            )

    def seen(self, key: str) -> bool:
        """Whether a webhook call's ``key`` was recorded (see :meth:`first_seen`)."""
        query = sa.select(webhook_seen_table.c.key).where(webhook_seen_table.c.key == key[:255])
        with self._tx() as conn:
            return conn.execute(query).first() is not None

    def first_seen(self, key: str, *, now: datetime) -> bool:
        """Record a webhook call's ``key``; False if it was recorded before (a replay)."""
        try:
            with self._tx(write=True) as conn:
                conn.execute(webhook_seen_table.insert().values(key=key[:255], at=now))
        except Conflict:
            return False
        return True

    def bounce_counts(self, digest: str) -> dict[str, int]:
        """How many hard and soft bounces and complaints period ``digest`` drew."""
        query = (
            sa.select(bounce_events_table.c.kind, sa.func.count())
            .where(bounce_events_table.c.digest == digest)
            .group_by(bounce_events_table.c.kind)
        )
        counts = dict.fromkeys(("hard", "soft", "complaint"), 0)
        with self._tx() as conn:
            for kind, count in conn.execute(query):
                counts[kind] = int(count)
        return counts

    def suppression(self, email: str) -> Suppression | None:
        """Why ``email`` is suppressed, or None."""
        query = sa.select(suppressions_table).where(
            suppressions_table.c.email_key == email_key(email)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _as_suppression(row)

    def list_suppressions(self) -> list[Suppression]:
        """Every suppressed address, oldest first."""
        query = sa.select(suppressions_table).order_by(suppressions_table.c.at)
        with self._tx() as conn:
            return [_as_suppression(row) for row in conn.execute(query)]

    def unsuppress(self, email: str) -> bool:
        """Forget a suppression and its soft bounces (an operator's decision); False if none."""
        key = email_key(email)
        with self._tx(write=True) as conn:
            gone = conn.execute(
                suppressions_table.delete().where(suppressions_table.c.email_key == key)
            ).rowcount
            conn.execute(soft_bounces_table.delete().where(soft_bounces_table.c.email_key == key))
        return bool(gone)

    def soft_bounce(
        self, email: str, reason: str, *, now: datetime, limit: int, window: timedelta
    ) -> Suppression | None:
        """Count a soft bounce; the suppression it caused, if it reached ``limit``.

        Counted are the soft bounces within ``window`` that came after the
        address's last delivered message: a delivery resets the count.
        """
        address = normalize_email(email)
        key = email_key(address)
        with self._tx(write=True) as conn:
            conn.execute(
                soft_bounces_table.insert().values(email_key=key, reason=reason[:2000], at=now)
            )
            delivered = conn.execute(
                sa.select(sa.func.max(ledger_table.c.sent_at))
                .select_from(ledger_table.join(subscribers_table))
                .where(subscribers_table.c.email_key == key)
                .where(ledger_table.c.status == "sent")
            ).scalar()
            since = now - window
            if delivered is not None and delivered > since:
                since = delivered
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(soft_bounces_table)
                .where(soft_bounces_table.c.email_key == key)
                .where(soft_bounces_table.c.at > since)
            ).scalar_one()
        if count < limit:
            return None
        return self.suppress(
            address, "bounced", f"{count} soft bounces within {window.days} days: {reason}", now=now
        )

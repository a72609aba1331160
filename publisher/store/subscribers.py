"""The subscriber list: add, find, list, change and remove the people who get digests.

:class:`SubscriberOps` is the part of :class:`~publisher.store.Store` that
owns the ``subscribers`` table (and deletes a subscriber's ledger and
delivery rows with them). Input is checked before anything is written
(:mod:`.addresses`, :func:`publisher.mail.names.name_problem`); each
operation is one transaction. Never touches a ledger row's status: that is
:mod:`.ledger`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.mail.names import clean_name, name_problem
from publisher.store.addresses import clean_categories, email_key, normalize_email
from publisher.store.database import Conflict, Database
from publisher.store.schema import (
    as_subscriber,
    deliveries_table,
    ledger_table,
    subscribers_table,
    suppressions_table,
)
from publisher.store.values import SUBSCRIBER_STATUSES, Subscriber, check_choice

__all__ = ["SubscriberOps"]


def _with_id(id: int) -> sa.ColumnElement[bool]:
    return subscribers_table.c.id == id


class SubscriberOps(Database):
    """Subscribers: who receives digests, with their categories and status."""

    def add_subscriber(
        self,
        email: str,
        *,
        name: str = "",
        categories: Iterable[str] = (),
        status: str = "active",
        now: datetime,
        force: bool = False,
    ) -> Subscriber:
        """Add an address; StoreError if it is invalid, already subscribed or suppressed.

        An address added as active counts as confirmed now (an operator added it).
        A suppressed address (a hard bounce, a complaint) is added only with
        ``force``, which forgets its suppression.
        """
        address = normalize_email(email)
        problem = name_problem(name)
        if problem is not None:
            raise StoreError(f"name {name.strip()!r}: {problem}")
        cleaned = clean_name(name)
        cats = clean_categories(categories)
        check_choice(status, SUBSCRIBER_STATUSES, "status")
        try:
            with self._tx(write=True) as conn:
                key = email_key(address)
                suppressed = conn.execute(
                    sa.select(suppressions_table).where(suppressions_table.c.email_key == key)
                ).first()
                if suppressed is not None and not force:
                    m = suppressed._mapping
                    raise StoreError(
                        f"{address}: suppressed ({m['kind']} {m['at']:%Y-%m-%d}: {m['reason']});"
                        " --force adds it again"
                    )
                if suppressed is not None:
                    conn.execute(
                        suppressions_table.delete().where(suppressions_table.c.email_key == key)
                    )
                conn.execute(
                    subscribers_table.insert().values(
                        email=address,
                        email_key=key,
                        name=cleaned,
                        categories=list(cats),
                        status=status,
                        created_at=now,
                        updated_at=now,
                        confirmed_at=now if status == "active" else None,
                    )
                )
                row = conn.execute(
                    sa.select(subscribers_table).where(subscribers_table.c.email_key == key)
                ).one()
        except Conflict as exc:
            raise StoreError(f"{address}: already subscribed") from exc
        return as_subscriber(row)

    def get_subscriber(self, email: str) -> Subscriber | None:
        """The subscriber with this address (any case), or None."""
        query = sa.select(subscribers_table).where(
            subscribers_table.c.email_key == email_key(email)
        )
        with self._tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else as_subscriber(row)

    def get_subscriber_by_id(self, id: int) -> Subscriber | None:
        """The subscriber with this id, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(subscribers_table).where(_with_id(id))).first()
        return None if row is None else as_subscriber(row)

    def list_subscribers(self, status: str | None = None) -> list[Subscriber]:
        """Every subscriber (with this status, if given), oldest first."""
        query = sa.select(subscribers_table).order_by(subscribers_table.c.id)
        if status is not None:
            check_choice(status, SUBSCRIBER_STATUSES, "status")
            query = query.where(subscribers_table.c.status == status)
        with self._tx() as conn:
            return [as_subscriber(row) for row in conn.execute(query)]

    def _update_subscriber(self, id: int, values: dict[str, Any], now: datetime) -> Subscriber:
        with self._tx(write=True) as conn:
            current = conn.execute(sa.select(subscribers_table).where(_with_id(id))).first()
            if current is None:
                raise StoreError(f"subscriber {id}: not found")
            if values.get("status") == "active" and current._mapping["confirmed_at"] is None:
                values = {**values, "confirmed_at": now}
            conn.execute(
                subscribers_table.update().where(_with_id(id)).values(**values, updated_at=now)
            )
            row = conn.execute(sa.select(subscribers_table).where(_with_id(id))).one()
        return as_subscriber(row)

    def set_status(self, id: int, status: str, *, now: datetime) -> Subscriber:
        """Change a subscriber's status; becoming active the first time confirms them."""
        check_choice(status, SUBSCRIBER_STATUSES, "status")
        return self._update_subscriber(id, {"status": status}, now)

    def set_categories(self, id: int, categories: Iterable[str], *, now: datetime) -> Subscriber:
        """Replace the categories a subscriber follows (empty: all of them)."""
        return self._update_subscriber(id, {"categories": list(clean_categories(categories))}, now)

    def remove_subscriber(self, email: str) -> bool:
        """Delete a subscriber with their ledger and delivery history; False if absent."""
        query = sa.select(subscribers_table.c.id).where(
            subscribers_table.c.email_key == email_key(email)
        )
        with self._tx(write=True) as conn:
            found = conn.execute(query).scalar()
            if found is None:
                return False
            # Deleted explicitly too, for databases where foreign keys do not cascade.
            conn.execute(ledger_table.delete().where(ledger_table.c.subscriber_id == found))
            conn.execute(deliveries_table.delete().where(deliveries_table.c.subscriber_id == found))
            conn.execute(subscribers_table.delete().where(_with_id(found)))
        return True

"""The store's paths for large lists (planning 100,000 subscribers), on each database.

The thresholds are lowered so that a handful of rows takes the same paths.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import publisher.store.ledger as ledger
from publisher.store import Store

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_bulk_planning_and_the_one_pass_over_deliveries_give_what_small_lists_give(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "_BULK", 2)
    with Store(store_url) as store:
        ids = [store.add_subscriber(f"s{i}@example.net", now=T0).id for i in range(7)]
        # Some rows exist already: planning again keeps them and adds the rest.
        first = store.plan_sends("W1", [(sid, ["p1"], f"<a{sid}@x>") for sid in ids[:3]], now=T0)
        plans = [(sid, ["p1", "p2"], f"<b{sid}@x>") for sid in reversed(ids)]
        rows = store.plan_sends("W1", plans, now=T0)
        assert [r.subscriber_id for r in rows] == list(reversed(ids))  # in the order asked
        assert {r.id for r in rows} >= {r.id for r in first}
        by_sid = {r.subscriber_id: r for r in rows}
        assert by_sid[ids[0]].post_ids == ("p1",) and by_sid[ids[6]].post_ids == ("p1", "p2")
        assert by_sid[ids[5]].email == "s5@example.net" and by_sid[ids[5]].status == "pending"
        for row in rows[:4]:
            store.mark_sending(row.id, now=T0)
            store.mark_sent(row.id, now=T0)
        wanted = ids[1:]  # more than _BULK: one pass over every delivery
        many = store.delivered_post_ids_by_subscriber(wanted)
        monkeypatch.setattr(ledger, "_BULK", 1000)
        few = store.delivered_post_ids_by_subscriber(wanted)
        assert many == few and set(many) == set(wanted)
        assert many[ids[6]] == {"p1", "p2"} and many[ids[1]] == set()

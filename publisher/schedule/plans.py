"""When ``publisher run``'s one-off jobs fall due: the next publish, a digest's next try.

:func:`publish_plan` says when the soonest future post is published and which
posts appear then; :func:`retry_time` says when a period's deferred messages
are tried again, if at all. Whether a digest period is sent in the first place
is :mod:`.catchup`'s decision.

Pure functions of plain values, so tests drive them with datetimes instead of
waiting. Nothing here may read the clock, touch the disk or the store, or know
about APScheduler: the jobs in :mod:`.build_jobs` and :mod:`.digest_jobs` act
on what these return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from publisher.schedule.catchup import lateness
from publisher.site.posts import Post

__all__ = ["BUSY_RETRY", "RETRY_EVERY", "PublishPlan", "publish_plan", "retry_time"]


@dataclass(frozen=True)
class PublishPlan:
    """When the next future post falls due, and which posts fall due then."""

    when: datetime
    sources: tuple[str, ...]


def publish_plan(scheduled: Sequence[Post]) -> PublishPlan | None:
    """The rebuild that publishes the soonest of ``scheduled``, or None if nothing waits."""
    if not scheduled:
        return None
    when = min(post.date for post in scheduled)
    return PublishPlan(when, tuple(post.source for post in scheduled if post.date == when))


RETRY_EVERY = timedelta(minutes=15)  # after a server deferred some messages
BUSY_RETRY = timedelta(minutes=5)  # after finding another process sending a digest


def retry_time(
    due: datetime,
    now: datetime,
    max_lateness: timedelta,
    *,
    owed: int,
    every: timedelta = RETRY_EVERY,
) -> datetime | None:
    """When to try a period's pending messages again (a server said "later"), or None.

    Only while the retry would still be within ``max_lateness`` of the period's
    due time: a digest that arrives two days late is worse than one skipped.
    Messages whose delivery is uncertain are not "owed": only an operator may
    resend them.
    """
    if owed <= 0:
        return None
    at = now.astimezone(UTC) + every
    return at if lateness(due, at) < max_lateness else None

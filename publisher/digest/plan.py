"""Who gets which posts this period: pure decisions, made before anything is recorded.

:func:`plan_selections` picks each due subscriber's posts for a new period's
ledger; :func:`selection_for` rebuilds the message a row planned earlier
carries. Pure: no store, no file, no network; what has already been delivered
comes in through the ``delivered`` callable, and the ledger rows as values.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime, timedelta

from publisher.config import Config
from publisher.digest.period import Period, next_due
from publisher.digest.select import Selection, first_digest_floor, group_posts, select_posts
from publisher.site.posts import Post
from publisher.store import LedgerRow, Subscriber

__all__ = ["plan_selections", "selection_for"]


def _joined(subscriber: Subscriber) -> datetime:
    return subscriber.confirmed_at or subscriber.created_at


def _first_dues(config: Config, joined: Iterable[datetime]) -> dict[datetime, datetime]:
    """The first scheduled digest at or after each time in ``joined``.

    One schedule lookup per interval between fire times that holds someone's
    joining, rather than one per subscriber: ten thousand subscribers who
    joined in the same few weeks cost a few lookups.
    """
    found: dict[datetime, datetime] = {}
    fire: datetime | None = None
    for moment in sorted(set(joined)):
        # The first fire at or after an earlier moment is also the first at or
        # after this one, unless this one is past it.
        if fire is None or moment > fire:
            fire = next_due(config, moment - timedelta(microseconds=1))
        found[moment] = fire
    return found


def plan_selections(
    config: Config,
    period: Period,
    published: list[Post],
    subscribers: Iterable[Subscriber],
    delivered: Callable[[int], set[str]],
) -> tuple[dict[int, Selection], int]:
    """Each due subscriber's digest, and how many subscribers have nothing new.

    ``delivered(subscriber_id)`` gives the posts already sent to them.
    """
    chosen: dict[int, Selection] = {}
    nothing = 0
    window = config.digest.first_window
    subscribers = list(subscribers)
    first_dues = _first_dues(config, [_joined(s) for s in subscribers if _joined(s) <= period.due])
    # A hundred thousand subscribers follow a few hundred distinct sets of categories
    # and joined in a few weeks: the posts each set may get from each first digest
    # on are worked out once, and each subscriber's delivered posts taken from them.
    # What select() decides, in a tenth of the time.
    followed: dict[tuple[tuple[str, ...], datetime], list[Post]] = {}
    selections: dict[tuple[tuple[str, ...], tuple[str, ...]], Selection] = {}
    for subscriber in subscribers:
        joined = _joined(subscriber)
        first_due = first_dues[joined] if joined <= period.due else period.due
        floor = first_digest_floor(joined, period.due, first_due, window)
        categories = tuple(sorted(set(subscriber.categories)))
        candidates = followed.get((categories, floor))
        if candidates is None:
            candidates = select_posts(published, categories, (), floor)
            followed[categories, floor] = candidates
        done = delivered(subscriber.id)
        posts = [post for post in candidates if post.id not in done] if done else candidates
        if not posts:
            nothing += 1
            continue
        key = (categories, tuple(post.id for post in posts))
        selection = selections.get(key)
        if selection is None:
            selection = selections[key] = group_posts(posts, categories)
        chosen[subscriber.id] = selection
    return chosen, nothing


def selection_for(
    row: LedgerRow,
    subscriber: Subscriber,
    by_id: dict[str, Post],
    delivered: Collection[str] = frozenset(),
) -> Selection:
    """The message a planned row carries: its fixed posts that are still published and
    not ``delivered`` since (by a later digest), grouped as the subscriber reads."""
    posts = [
        by_id[post_id] for post_id in row.post_ids if post_id in by_id and post_id not in delivered
    ]
    return group_posts(posts, subscriber.categories)

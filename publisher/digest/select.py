"""Which posts a subscriber's digest holds: a pure decision, tested with plain objects.

A subscriber gets the published posts in the categories they follow (none
followed means all) that no earlier digest sent them. A post is known by its
:attr:`~publisher.site.posts.Post.id`, which survives edits, so an edited or
future-dated post still reaches each subscriber once.

The archive is never dumped on a newcomer: posts dated more than
``digest.first_window`` before the subscriber's first digest are left out for
good. The first digest is the first period that fell due once they joined, or
the period being sent if they joined after it fell due; over successive
periods this floor never moves back, so nothing old turns up later.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from publisher.site.posts import Post

__all__ = [
    "Group",
    "Selection",
    "first_digest_floor",
    "follows",
    "group_posts",
    "select",
    "select_posts",
]


class Follower(Protocol):
    """What selection needs to know about a subscriber."""

    @property
    def categories(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Group:
    """The posts of one category in a digest; ``name`` is "" for uncategorised posts."""

    name: str
    posts: tuple[Post, ...]  # newest first


@dataclass(frozen=True, slots=True)
class Selection:
    """One subscriber's digest content, grouped by category."""

    groups: tuple[Group, ...]

    @property
    def posts(self) -> tuple[Post, ...]:
        """Every post once, in reading order (group by group)."""
        return tuple(post for group in self.groups for post in group.posts)

    @property
    def post_ids(self) -> tuple[str, ...]:
        return tuple(post.id for post in self.posts)

    @property
    def key(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Equal for two subscribers whose digests hold the same posts in the same groups."""
        return tuple((g.name, tuple(p.id for p in g.posts)) for g in self.groups)


def _folded(categories: Iterable[str]) -> list[str]:
    return [c.casefold() for c in categories]


def follows(categories: Collection[str], post: Post) -> bool:
    """True when a subscriber following ``categories`` wants ``post`` (none = all)."""
    if not categories:
        return True
    wanted = set(_folded(categories))
    return any(c in wanted for c in _folded(post.categories))


def first_digest_floor(
    joined: datetime, period_due: datetime, first_due_after_joining: datetime, window: timedelta
) -> datetime:
    """The oldest post date a subscriber can ever receive.

    ``joined`` is when they became active; ``first_due_after_joining`` is the
    first scheduled digest at or after that moment. The first digest is that
    one, or the period being sent now when they joined after it fell due.
    """
    # Joined after the period fell due: first_due_after_joining is a later one.
    return min(first_due_after_joining, period_due) - window


def select_posts(
    published: Iterable[Post],
    categories: Collection[str],
    delivered: Collection[str],
    floor: datetime,
) -> list[Post]:
    """The posts due to a subscriber: followed, never delivered, dated at or after ``floor``.

    ``published`` holds the published posts (drafts and future posts left
    out); the result keeps its order.
    """
    # follows(), with the subscriber's categories folded once rather than once a post.
    wanted = set(_folded(categories))
    return [
        post
        for post in published
        if post.id not in delivered
        and post.date >= floor
        and (not wanted or any(c.casefold() in wanted for c in post.categories))
    ]


def group_posts(posts: Sequence[Post], categories: Collection[str]) -> Selection:
    """Group ``posts`` by category for a subscriber following ``categories``.

    A post in several categories is shown once, under the first of its
    categories the subscriber follows (any, if they follow all). Groups are in
    name order with uncategorised posts last; posts in each group newest first.
    """
    wanted = set(_folded(categories))
    groups: dict[str, list[Post]] = {}
    for post in posts:
        name = next(
            (c for c in post.categories if not wanted or c.casefold() in wanted),
            "",
        )
        groups.setdefault(name, []).append(post)
    ordered = sorted(groups, key=lambda name: (name == "", name.casefold(), name))
    return Selection(
        tuple(
            Group(name, tuple(sorted(groups[name], key=lambda p: (p.date, p.id), reverse=True)))
            for name in ordered
        )
    )


def select(
    published: Iterable[Post],
    subscriber: Follower,
    delivered: Collection[str],
    floor: datetime,
) -> Selection | None:
    """The digest for one subscriber, or None when nothing is new for them."""
    posts = select_posts(published, subscriber.categories, delivered, floor)
    if not posts:
        return None
    return group_posts(posts, subscriber.categories)

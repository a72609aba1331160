"""The last build's plan, kept so that a warm build need not read every post.

Which posts each feed shows depends on each post's date, draft flag,
categories and tags, on whether it parsed, on the feed settings and on the
time of the build. When an edit changed none of those (the usual edit: a
typo, a new paragraph), the last plan still holds and only the edited posts
need reading: ten thousand other posts are neither loaded nor sorted again.

Pure: the cache stores a :class:`Memo`; :func:`reuse` decides whether it
still holds and returns the plan with the edited posts swapped in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from publisher.config import Config
from publisher.errors import PostError
from publisher.feeds import Scope
from publisher.site.posts import Post, PostSet

__all__ = ["ERROR_KEY", "Memo", "ScopePlan", "make_memo", "plan_key", "plan_settings", "reuse"]

#: The plan key of a file that was rejected: such a file always forces a full read,
#: so that its error (or its recovery) is reported the way a full read reports it.
ERROR_KEY = "!"


def plan_key(result: Post | PostError) -> str:
    """A short hash of everything about one post file that the plan depends on.

    Warnings are included because a build reports every post's warnings.
    """
    if isinstance(result, PostError):
        return ERROR_KEY
    text = repr(
        (result.draft, result.date.isoformat(), result.categories, result.tags, result.warnings)
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def plan_settings(config: Config) -> str:
    """The settings a plan depends on (feed options, site title): another value voids it."""
    return repr((config.site, config.feeds))


@dataclass(frozen=True)
class ScopePlan:
    """One scope of the plan, naming its posts by source file."""

    kind: str
    name: str
    folder: str
    title: str
    sources: tuple[str, ...]
    history: tuple[str, ...] = ()  # every post of the scope, oldest first (archives)


@dataclass(frozen=True)
class Memo:
    """What a full read of the posts decided, and the window of time in which it holds."""

    settings: str  # plan_settings() of the config it was made with
    newest_published: datetime | None  # the plan holds from this time ...
    next_scheduled: datetime | None  # ... until this one (a post's date comes)
    scopes: tuple[ScopePlan, ...]
    posts: Mapping[str, Post]  # every post a scope shows, and every scheduled one
    scheduled: tuple[str, ...]  # sources, soonest first
    errors: tuple[PostError, ...]
    warnings: tuple[str, ...]
    published: int
    drafts: int

    def plan(self) -> list[Scope]:
        """The scopes with their posts, as :func:`~publisher.feeds.plan_scopes` made them."""
        return [
            Scope(
                s.kind,
                s.name,
                s.folder,
                s.title,
                tuple(self.posts[p] for p in s.sources),
                s.history,
            )
            for s in self.scopes
        ]

    def scheduled_posts(self) -> list[Post]:
        return [self.posts[source] for source in self.scheduled]


def make_memo(config: Config, posts: PostSet, scopes: list[Scope], warnings: list[str]) -> Memo:
    """Remember a plan made from a full read of the posts."""
    kept = {p.source: p for scope in scopes for p in scope.posts}
    kept.update((p.source, p) for p in posts.scheduled)
    return Memo(
        settings=plan_settings(config),
        newest_published=posts.published[0].date if posts.published else None,
        next_scheduled=posts.scheduled[0].date if posts.scheduled else None,
        scopes=tuple(
            ScopePlan(
                s.kind, s.name, s.folder, s.title, tuple(p.source for p in s.posts), s.history
            )
            for s in scopes
        ),
        posts=kept,
        scheduled=tuple(p.source for p in posts.scheduled),
        errors=tuple(posts.errors),
        warnings=tuple(warnings),
        published=len(posts.published),
        drafts=len(posts.drafts),
    )


def reuse(
    memo: Memo, config: Config, now: datetime, edited: Mapping[str, tuple[str, Post | PostError]]
) -> Memo | None:
    """The memo updated for ``edited`` posts, or None when the plan must be made again.

    ``edited`` maps each changed file (none added or removed) to its plan key
    before the edit and what reading it gives now. The plan holds when the
    settings are the same, no post's date has come or been passed back over,
    and no edit changed a post's plan key or made or mended a rejected file.
    """
    if memo.settings != plan_settings(config):
        return None
    if memo.newest_published is not None and now < memo.newest_published:
        return None
    if memo.next_scheduled is not None and now >= memo.next_scheduled:
        return None
    swapped: dict[str, Post] = {}
    for source, (old_key, result) in edited.items():
        if old_key == ERROR_KEY or plan_key(result) != old_key:
            return None
        assert isinstance(result, Post)  # only a rejected file has ERROR_KEY
        if source in memo.posts:
            swapped[source] = result
    if not swapped:
        return memo
    return replace(memo, posts={**memo.posts, **swapped})

"""Which feeds exist and which posts each holds: the site, each category, each tag.

Pure: a list of published posts in, :class:`Scope` values out; no file or
network I/O. The documents themselves are made by :mod:`publisher.feeds.documents`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from publisher.config import Config
from publisher.site.posts import Post
from publisher.site.urls import assign_slugs, url_join

__all__ = ["FILE_NAMES", "MEDIA_TYPES", "Scope", "in_full", "plan_scopes", "post_url"]

FILE_NAMES = {"atom": "atom.xml", "rss": "rss.xml", "json": "feed.json"}
MEDIA_TYPES = {
    "atom": "application/atom+xml",
    "rss": "application/rss+xml",
    "json": "application/feed+json",
}


@dataclass(frozen=True)
class Scope:
    """One set of feeds: the whole site, one category or one tag."""

    kind: str  # "site", "category" or "tag"
    name: str  # the category or tag as written; "" for the site
    folder: str  # "" or "categories/<slug>/" (not percent-encoded)
    title: str
    posts: tuple[Post, ...]  # the current feed's, newest first (see plan_scopes)
    # With archives on: every post of the scope, by source file, oldest first;
    # the archive pages are cut from it (see publisher.feeds.archives).
    history: tuple[str, ...] = ()

    def path(self, fmt: str) -> str:
        """The feed file's path relative to the output folder."""
        return self.folder + FILE_NAMES[fmt]

    def url(self, config: Config, fmt: str) -> str:
        """The feed's published URL, which is also its self link."""
        return url_join(config.site.url, "/" + self.path(fmt))

    def home(self, config: Config) -> str:
        """The page a reader opens from this feed."""
        return url_join(config.site.url, "/")


def post_url(config: Config, post: Post) -> str:
    """A post's absolute, percent-encoded URL."""
    return url_join(config.site.url, post.permalink)


def in_full(config: Config, scope: Scope) -> tuple[Post, ...]:
    """The current feed's posts (the newest) that it shows with their rendered bodies.

    The newest ``feeds.max_items``, as with archives off. The older posts a
    current feed holds only to reach back to the newest full archive page are
    shown as that page shows them (a summary from the excerpt or the opening
    paragraph, no content), so they cost no Markdown rendering; all of them with
    ``feeds.archive_content: full``.
    """
    feeds = config.feeds
    if not feeds.archive or feeds.archive_content == "full":
        return scope.posts
    return scope.posts[: feeds.max_items]


def _group(
    posts: Iterable[Post], names_of: Callable[[Post], Iterable[str]]
) -> dict[str, list[Post]]:
    groups: dict[str, list[Post]] = {}
    for post in posts:
        for name in names_of(post):
            groups.setdefault(name, []).append(post)
    return groups


def _scope(
    config: Config, kind: str, name: str, folder: str, title: str, posts: list[Post]
) -> Scope:
    """A scope of ``posts`` (newest first): its current feed and, with archives, its history.

    Archive pages hold ``feeds.archive_page_size`` posts each, counted from the
    oldest, and only full pages are archives; the current feed holds the newest
    ``feeds.max_items`` posts, or every post since the newest full page when that
    is more, so that walking back from it misses none (those beyond
    ``max_items`` in summary only: see :func:`in_full`).
    """
    feeds = config.feeds
    if not feeds.archive:
        return Scope(kind, name, folder, title, tuple(posts[: feeds.max_items]))
    since_full = len(posts) % feeds.archive_page_size
    current = posts[: max(feeds.max_items, since_full)]
    history = tuple(p.source for p in reversed(posts))
    return Scope(kind, name, folder, title, tuple(current), history)


def plan_scopes(config: Config, published: list[Post]) -> list[Scope]:
    """Decide which feeds exist and which posts each one holds.

    ``published`` must be sorted newest first. Names whose slugs collide get
    distinct folders (see :func:`~publisher.site.urls.assign_slugs`).
    """
    site = config.site
    scopes = [_scope(config, "site", "", "", site.title, published)]
    kinds: list[tuple[str, str, Callable[[Post], Iterable[str]], Mapping[str, str], str]] = []
    if config.feeds.per_category:
        kinds.append(
            ("category", "categories", lambda p: p.categories, config.feeds.category_slugs, "")
        )
    if config.feeds.per_tag:
        kinds.append(("tag", "tags", lambda p: p.tags, config.feeds.tag_slugs, "#"))
    for kind, folder, names_of, overrides, mark in kinds:
        groups = _group(published, names_of)
        slugs = assign_slugs(groups, overrides)
        for name in sorted(groups):
            title = f"{site.title} – {mark}{name}"
            scopes.append(
                _scope(config, kind, name, f"{folder}/{slugs[name]}/", title, groups[name])
            )
    return scopes

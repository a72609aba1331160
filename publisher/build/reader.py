"""Reading a site's posts without building it: the one way in for the web forms and digests.

A :class:`SiteReader` owns a :class:`~publisher.build.cache.BuildCache` and reads
the posts through it the way a build does, so that a post file is parsed
again only when it changed and, once a read has vouched for a file's stat,
not even opened again (see ``trusted_before`` in :mod:`publisher.build.cache`).
Code that reads the posts more than once (the subscribe form) keeps one
reader; a one-shot reader (``publisher digest send``) may start from the
build's cache on disk, which it reads but never writes: that file belongs
to ``publisher build`` and ``publisher run``.

What a reader returns is always what reading every file cold would give:
the cache only spares the work.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from publisher.build.cache import BuildCache
from publisher.build.pipeline import load_site, settings_key
from publisher.config import Config
from publisher.errors import PostError
from publisher.site.posts import PostSet

__all__ = ["SiteRead", "SiteReader"]


class SiteRead(NamedTuple):
    """One read of the site, shaped as :func:`publisher.build.pipeline.load_site`'s answer."""

    posts: PostSet
    warnings: list[str]
    stale: list[PostError]
    parsed: int  # post files read and parsed this time; the rest came from the cache


class SiteReader:
    """Reads one site's posts again and again, parsing only what changed since the last read.

    With ``build_cache``, the first read starts from a copy of what the last
    ``publisher build`` (or ``publisher run``) saved in ``paths.cache``; the
    copy lives in memory and is never saved. A cache folder that is missing,
    unreadable or made with other settings is no error: that read runs cold.

    Not thread-safe: callers that share a reader take turns (see
    :class:`publisher.web.categories.SiteCategories`).
    """

    def __init__(self, config: Config, *, build_cache: bool = False) -> None:
        self.config = config
        self.build_cache = build_cache
        self.parsed = 0  # post files parsed by the last read
        self.rechecked = 0  # files the last read hashed only because their stat was too recent
        self._cache: BuildCache | None = None  # made by the first read

    def read(self, now: datetime) -> SiteRead:
        """Every post of the site, split at ``now`` into published, scheduled and drafts."""
        if self._cache is None:
            self._cache = self._first_cache()
        cache = self._cache
        cache.begin_reading()
        posts, warnings, stale, parsed = load_site(self.config, now, cache)
        # Only now may what this read saw be trusted by the next one.
        cache.end_reading()
        self.parsed, self.rechecked = parsed, cache.rechecked
        return SiteRead(posts, warnings, stale, parsed)

    def _first_cache(self) -> BuildCache:
        settings = settings_key(self.config)
        if not self.build_cache:
            return BuildCache(settings=settings)
        try:
            cache = BuildCache.load(self.config.paths.cache, settings)
        except Exception:
            # BuildCache.load already runs cold on what it knows can go wrong; a
            # cache is only ever a shortcut, so nothing else about it may stop a read.
            return BuildCache(settings=settings)
        # Read-only: with no folder the copy can never be saved over the build's,
        # nor open its bodies database. A reader needs neither the plan nor the feeds.
        cache.folder = None
        cache.memo, cache.feeds = None, {}
        return cache

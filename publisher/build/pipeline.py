"""``publisher build``: the pipeline from posts/ to every feed file.

:func:`build` reads as the pipeline it is:

1. **read and plan** (:func:`_plan`): find the post files and decide what every
   feed shows. When the edits since the last build moved no post, the last
   plan is reused and only the edited posts are read (:mod:`publisher.build.plan`);
   otherwise every post is read (:mod:`publisher.build.sources`, forked
   workers on a cold build) and the feeds planned again;
2. **plan the outputs** (:mod:`publisher.build.targets`): fingerprint every file
   and keep aside those the cache says are unchanged and still on disk;
3. **render** (:mod:`publisher.build.render`): the bodies of only the posts that
   some output to make shows, then those outputs' bytes;
4. **write** (:func:`publisher.build.targets.write_outputs`): the changed files,
   the removal of files no longer made, then the cache, encoded meanwhile.

Everything is gathered before anything is written, and an unchanged feed is
neither regenerated nor rewritten. The cache (:mod:`publisher.build.cache`)
carries what one build learned to the next.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from publisher import __version__
from publisher.build.cache import BuildCache
from publisher.build.output import OutputWriter
from publisher.build.plan import Memo, make_memo, reuse
from publisher.build.render import PostLookup, render_outputs
from publisher.build.sources import find_post_files, read_edits, read_posts
from publisher.build.targets import plan_outputs, to_make, write_outputs
from publisher.config import Config
from publisher.errors import PostError
from publisher.feeds import Scope, is_page, plan_scopes
from publisher.site.posts import Post, PostSet, split_posts

__all__ = ["BuildResult", "build", "load_site", "settings_key"]

# Past this many edited files a warm build reads every post: reusing the plan
# is meant for the edit that was just saved, not for a checkout.
_MAX_EDITS = 50


@dataclass
class BuildResult:
    """What a build did, for the command line, the scheduler and the status file."""

    published: int = 0  # how many posts are published
    drafts: int = 0
    scheduled: list[Post] = field(default_factory=list)  # soonest first
    errors: list[PostError] = field(default_factory=list)  # rejected post files
    scopes: list[Scope] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # those of written that were new
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stale: list[PostError] = field(default_factory=list)
    parsed: int = 0
    rendered: int = 0
    read_all: bool = True  # False when the last plan held and only edited posts were read
    seconds: float = 0.0
    cache: BuildCache | None = None  # what to pass as ``cache`` to the next build

    @property
    def changed_feeds(self) -> list[str]:
        """The feeds written that a subscriber may have read before: for WebSub pings.

        Every current feed written, and each archive page that was there before
        (an old post edited, the open page grown); not the pages made new, of
        which no hub can have a subscriber (a cold build makes hundreds).
        """
        created = set(self.created)
        return [f for f in self.written if not (is_page(f) and f in created)]

    @property
    def files(self) -> int:
        return len(self.written) + len(self.unchanged)


@dataclass(frozen=True)
class _Known:
    """What the build knows of every published post, for archive pages."""

    digests: Mapping[str, str]  # content hash by source file
    lookup: PostLookup  # the post of a source file
    every_post: list[Post] | None  # all of them, when every post was read
    edited: frozenset[str] | None = None  # the files read again, when the last plan held


def settings_key(config: Config) -> str:
    """What parsed posts depend on besides their bytes: a cache made with another is void."""
    return repr((__version__, str(config.site.timezone), config.permalink, config.site.url))


def load_site(
    config: Config,
    now: datetime | None = None,
    cache: BuildCache | None = None,
    keep_last_good: bool = False,
    parallel: bool = False,
    found: list[tuple[str, os.stat_result | None]] | None = None,
) -> tuple[PostSet, list[str], list[PostError], int]:
    """Read every post and split them at ``now``: (posts, warnings, stale errors, parsed count)."""
    now = now or datetime.now(UTC)
    cache = cache or BuildCache(settings=settings_key(config))
    read = read_posts(config, cache, keep_last_good=keep_last_good, parallel=parallel, found=found)
    return split_posts(read.posts, read.errors, now), read.warnings, read.stale, read.parsed


def build(
    config: Config,
    *,
    now: datetime | None = None,
    use_cache: bool = True,
    write: bool = True,
    keep_last_good: bool = False,
    cache: BuildCache | None = None,
    parallel: bool = False,
) -> BuildResult:
    """Build every feed of the site; with ``write=False`` check everything and write nothing.

    ``cache`` lets a long-running process keep its cache in memory between builds
    (pass the last result's ``cache``; one made with other settings is replaced);
    ``parallel`` lets a single-threaded caller (the command line) fork workers.
    """
    started = time.perf_counter()
    cache = _open_cache(config, cache, use_cache=use_cache, write=write)
    files_before, memo_before = cache.sources(), cache.memo

    # Read and plan.
    result, known = _plan(
        config,
        now or datetime.now(UTC),
        cache,
        reuse_plan=use_cache and not keep_last_good,
        keep_last_good=keep_last_good,
        parallel=parallel,
        cached=bool(files_before),
    )
    # Plan every output and its fingerprint first: on a warm build most files are
    # unchanged, and the posts only they show need not be rendered at all.
    outputs = plan_outputs(
        config,
        result.scopes,
        known.digests,
        recorded=cache.feeds if known.edited is not None else None,
        edited=known.edited,
    )
    writer = OutputWriter(config.paths.output)
    todo = to_make(outputs, writer, cache.feeds if write else None)

    # Looking up a rendered body opens the bodies database: it is closed however
    # the build ends, or each failed build of ``publisher run`` would leave it open.
    try:
        made = render_outputs(
            config,
            result.scopes,
            todo,
            cache,
            parallel,
            known.lookup,
            every_post=known.every_post,
            writer=writer if write else None,
        )
        result.rendered = made.rendered
        result.warnings.extend(made.warnings)
        if write:
            learned = (
                result.parsed > 0
                or result.rendered > 0
                or cache.sources() != files_before
                or not use_cache
                or cache.memo != memo_before
                # Files read again because their stat was too recent to trust are trusted
                # once this build's time is saved: no need to read them again next time.
                or cache.rechecked > 0
            )
            result.removed = write_outputs(
                writer, cache, outputs, made.documents, made.unverified, learned=learned
            )
    finally:
        cache.close()
    cache.end_reading()
    result.written = writer.written
    result.created = writer.created
    result.unchanged = writer.unchanged
    result.cache = cache
    result.seconds = time.perf_counter() - started
    return result


def _open_cache(
    config: Config, cache: BuildCache | None, *, use_cache: bool, write: bool
) -> BuildCache:
    """``cache`` if it was made with this config's settings, else the one on disk or a new one."""
    settings = settings_key(config)
    if cache is not None and cache.settings == settings:
        return cache
    if use_cache:
        return BuildCache.load(config.paths.cache, settings)
    # Without the cache a build starts from nothing, and its result replaces the
    # cache: files it writes must never be judged later by an older record.
    return BuildCache(
        settings=settings, folder=config.paths.cache if write else None, stored_bodies=False
    )


def _plan(
    config: Config,
    now: datetime,
    cache: BuildCache,
    *,
    reuse_plan: bool,
    keep_last_good: bool,
    parallel: bool,
    cached: bool,
) -> tuple[BuildResult, _Known]:
    """Decide what every feed shows, from the last plan when it still holds.

    ``cached`` says whether the cache knows any post file.
    """
    cache.begin_reading()
    # With nothing cached every file is read, and its stat taken then (in parallel).
    found = find_post_files(config.paths.posts, stat=cached)
    reused = _replan(config, now, cache, found) if reuse_plan else None
    if reused is not None:
        return reused
    posts, warnings, stale, parsed = load_site(config, now, cache, keep_last_good, parallel, found)
    scopes = plan_scopes(config, posts.published)
    # A plan that serves broken posts in their last good version is the watcher's
    # alone: a plain build must report them, so it may not reuse this plan.
    cache.memo = None if stale else make_memo(config, posts, scopes, warnings)
    by_source = {p.source: p for p in posts.published}
    known = _Known(
        {p.source: p.digest for p in posts.published}, by_source.__getitem__, posts.published
    )
    return BuildResult(
        published=len(posts.published),
        drafts=len(posts.drafts),
        scheduled=posts.scheduled,
        errors=posts.errors,
        scopes=scopes,
        warnings=warnings,
        stale=stale,
        parsed=parsed,
    ), known


def _replan(
    config: Config, now: datetime, cache: BuildCache, found: list[tuple[str, os.stat_result | None]]
) -> tuple[BuildResult, _Known] | None:
    """The last plan with the edited posts swapped in, reading only those.

    None when there is no last plan or it no longer holds: a file was added or
    removed, too many changed, or an edit moved a post (see :func:`reuse`).
    """
    if cache.memo is None:
        return None
    edits = read_edits(config, cache, found, _MAX_EDITS)
    if edits is None:
        return None
    memo = reuse(cache.memo, config, now, {s: (k, e.result) for s, (k, e) in edits.items()})
    if memo is None:
        return None
    for source, (_, entry) in edits.items():
        cache.update(source, entry)
    cache.memo = memo
    return BuildResult(
        published=memo.published,
        drafts=memo.drafts,
        scheduled=memo.scheduled_posts(),
        errors=list(memo.errors),
        scopes=memo.plan(),
        warnings=list(memo.warnings),
        parsed=len(edits),
        read_all=False,
    ), _Known(
        {s: r[2] for s, r in cache.records().items()},
        _lookup(memo, cache),
        None,
        frozenset(edits),
    )


def _lookup(memo: Memo, cache: BuildCache) -> PostLookup:
    """The posts of a reused plan by source file: the plan's own, else the cache's.

    The plan keeps only the posts that current feeds show (and scheduled ones);
    an archive page made again holds an edited old post, and its neighbours are
    then decoded from the cache (once, for every post).
    """

    def lookup(source: str) -> Post:
        post = memo.posts.get(source)
        if post is not None:
            return post
        result = cache.files[source].result
        assert isinstance(result, Post), f"{source} is in a plan, so it parsed"
        return result

    return lookup

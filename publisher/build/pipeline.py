"""``publisher build``: the pipeline from posts/ to every feed file.

Read as a pipeline: read every post, decide what is published, plan the
feeds, render only the posts that some feed shows, then write every file.
Everything is gathered before anything is written, and an unchanged feed is
neither regenerated nor rewritten. When the edits since the last build moved
no post, the last plan is reused and only the edited posts are read (see
:mod:`publisher.build.plan`); a cold build does its reading, rendering and feed
making in forked workers (see :mod:`publisher.build.workers`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from publisher import __version__
from publisher.build.cache import BuildCache
from publisher.build.output import OutputWriter
from publisher.build.plan import make_memo, reuse
from publisher.build.sources import find_post_files, read_edits, read_posts
from publisher.build.workers import Background, map_chunks, worker_count
from publisher.config import Config
from publisher.errors import PostError
from publisher.feeds import MEDIA_TYPES, Scope, feed_document, opml_document, plan_scopes, post_url
from publisher.site.markup import Rendered, render
from publisher.site.posts import Post, PostSet, content_digest, read_body, split_posts

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
    def files(self) -> int:
        return len(self.written) + len(self.unchanged)


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


def _plan(
    config: Config,
    now: datetime,
    cache: BuildCache,
    *,
    reuse_plan: bool,
    keep_last_good: bool,
    parallel: bool,
    cached: bool,
) -> BuildResult:
    """Decide what every feed shows, from the last plan when it still holds.

    ``cached`` says whether the cache knows any post file.
    """
    cache.begin_reading()
    # With nothing cached every file is read, and its stat taken then (in parallel).
    found = find_post_files(config.paths.posts, stat=cached)
    if reuse_plan and cache.memo is not None:
        edits = read_edits(config, cache, found, _MAX_EDITS)
        if edits is not None:
            memo = reuse(cache.memo, config, now, {s: (k, e.result) for s, (k, e) in edits.items()})
            if memo is not None:
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
                )
    posts, warnings, stale, parsed = load_site(config, now, cache, keep_last_good, parallel, found)
    scopes = plan_scopes(config, posts.published)
    # A plan that serves broken posts in their last good version is the watcher's
    # alone: a plain build must report them, so it may not reuse this plan.
    cache.memo = None if stale else make_memo(config, posts, scopes, warnings)
    return BuildResult(
        published=len(posts.published),
        drafts=len(posts.drafts),
        scheduled=posts.scheduled,
        errors=posts.errors,
        scopes=scopes,
        warnings=warnings,
        stale=stale,
        parsed=parsed,
    )


def _render_key(config: Config, post: Post) -> tuple[str, str]:
    return (post.digest, f"{post_url(config, post)} {config.feeds.excerpt_length}")


def _render_chunk(config: Config, posts: Sequence[Post]) -> list[tuple[Rendered, str, bool]]:
    """Render posts from their files: (body, warning or "", whether the file was as parsed).

    A file whose bytes no longer hash to the post's digest changed after it was
    parsed, or is a broken post served in its last good version: its body is
    rendered from what is there now, but must not be cached under the post's key.
    """
    results = []
    for post in posts:
        warning = ""
        try:
            data = (config.paths.root / post.source).read_bytes()
        except OSError as exc:
            warning = f"{post.source}:1:1: file: cannot be read: {exc.strerror}"
            data = b""
        verified = content_digest(data) == post.digest
        body = render(
            read_body(data),
            post_url(config, post),
            excerpt=post.excerpt,
            excerpt_length=config.feeds.excerpt_length,
        )
        if body.had_illegal_chars:
            warning = f"{post.source}:{post.body_line}:1: body: removed characters that XML forbids"
        results.append((body, warning, verified))
    return results


def _render_posts(
    config: Config, posts: list[Post], cache: BuildCache, parallel: bool
) -> tuple[dict[str, Rendered], list[str], int, set[str]]:
    """Render each of ``posts``, reusing the cache.

    Returns the bodies by post id, warnings, how many were rendered, and the ids
    of posts whose file no longer matched what was parsed (not cached).
    """
    rendered: dict[str, Rendered] = {}
    todo = []
    for post in posts:
        body = cache.get_body(_render_key(config, post))
        if body is None:
            todo.append(post)
        else:
            rendered[post.id] = body
    workers = worker_count(len(todo) * 8) if parallel else 1  # rendering is ~8x parsing
    warnings = []
    unverified: set[str] = set()
    for post, (body, warning, verified) in zip(
        todo, map_chunks(partial(_render_chunk, config), todo, workers), strict=True
    ):
        if verified:
            cache.put_body(_render_key(config, post), body)
        else:
            unverified.add(post.id)
        rendered[post.id] = body
        if warning:
            warnings.append(warning)
    return rendered, warnings, len(todo), unverified


def _fingerprint(*parts: object) -> str:
    """A short hash of everything an output file's bytes depend on."""
    text = repr((__version__, *parts))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _feed_fingerprint(settings: str, scope: Scope, fmt: str) -> str:
    """What one feed depends on: ``settings`` (see build) and each post's file and hash.

    A post is named by its file and the hash of its bytes rather than by its
    fields: everything parsed from it follows from those and the settings.
    """
    posts = [(p.source, p.digest) for p in scope.posts]
    return _fingerprint(settings, fmt, scope.kind, scope.name, scope.folder, scope.title, posts)


def _template_stamp(config: Config, name: str) -> tuple[int, int]:
    """Stat of a user's override of a built-in template, so that editing it rebuilds."""
    try:
        st = (config.paths.templates / name).stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _index_page(config: Config, scopes: list[Scope]) -> bytes:
    # Jinja2 costs start-up time and this page rarely changes: imported here.
    import jinja2

    from publisher.site.templating import environment, template_error

    env = environment(config.paths.templates)
    feeds = [
        {
            "scope": scope,
            "links": [
                {"format": fmt, "type": MEDIA_TYPES[fmt], "url": scope.url(config, fmt)}
                for fmt in config.feeds.formats
            ],
        }
        for scope in scopes
    ]
    try:
        html = env.get_template("index.html.j2").render(site=config.site, feeds=feeds)
    except jinja2.TemplateError as exc:  # a site's own template: the user's error
        raise template_error(exc, "index.html.j2") from None
    return html.encode("utf-8")


def _documents(
    config: Config, scopes: list[Scope], rendered: dict[str, Rendered], outputs: Sequence[_Output]
) -> list[bytes]:
    """The bytes of each of ``outputs`` (run in worker processes on a cold build)."""
    documents = []
    for output in outputs:
        if output.scope is not None:
            documents.append(feed_document(config, output.scope, output.fmt, rendered))
        elif output.relative == "feeds.opml":
            documents.append(opml_document(config, scopes))
        else:
            documents.append(_index_page(config, scopes))
    return documents


@dataclass
class _Output:
    """One file a build may write: where, what it depends on, and how to make it."""

    relative: str
    fingerprint: str
    owner: str
    scope: Scope | None = None
    fmt: str = ""


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
    settings = settings_key(config)
    if cache is None or cache.settings != settings:
        # Without the cache a build starts from nothing, and its result replaces the
        # cache: files it writes must never be judged later by an older record.
        cache = (
            BuildCache.load(config.paths.cache, settings)
            if use_cache
            else BuildCache(
                settings=settings,
                folder=config.paths.cache if write else None,
                stored_bodies=False,
            )
        )
    files_before = cache.sources()
    memo_before = cache.memo
    result = _plan(
        config,
        now or datetime.now(UTC),
        cache,
        reuse_plan=use_cache and not keep_last_good,
        keep_last_good=keep_last_good,
        parallel=parallel,
        cached=bool(files_before),
    )
    scopes = result.scopes

    feed_settings = repr((config.site, config.feeds, config.permalink, config.paths.output))
    # Plan every output and its fingerprint first: on a warm build most files are
    # unchanged, and the posts only they show need not be rendered at all.
    outputs = [
        _Output(
            scope.path(fmt),
            _feed_fingerprint(feed_settings, scope, fmt),
            f"the {scope.kind} feed {scope.name!r}",
            scope,
            fmt,
        )
        for scope in scopes
        for fmt in config.feeds.formats
    ]
    listing = [(s.kind, s.name, s.folder, s.title) for s in scopes]
    stamp = (config.site, config.feeds.formats, config.paths.output, listing)
    outputs.append(_Output("feeds.opml", _fingerprint("opml", *stamp), "the OPML list"))
    outputs.append(
        _Output(
            "index.html",
            _fingerprint("index", *stamp, _template_stamp(config, "index.html.j2")),
            "the feed index page",
        )
    )
    writer = OutputWriter(config.paths.output)
    todo: list[_Output] = []
    for output in outputs:
        target = writer.claim(output.relative, output.owner)
        if write and cache.feeds.get(output.relative) == output.fingerprint and target.exists():
            writer.unchanged.append(output.relative)
        else:
            todo.append(output)

    # Looking up a rendered body opens the bodies database: it is closed however
    # the build ends, or each failed build of ``publisher run`` would leave it open.
    try:
        needed = {p.id: p for o in todo if o.scope for p in o.scope.posts}
        rendered, render_warnings, result.rendered, unverified = _render_posts(
            config, list(needed.values()), cache, parallel
        )
        result.warnings.extend(render_warnings)
        # Keep rendered bodies only for posts some feed still shows, so the cache stays small.
        shown = {_render_key(config, p) for scope in scopes for p in scope.posts}
        cache.keep_bodies(shown)

        # An XML feed costs feedgen and lxml some 2 ms, thirty times the parse of a post.
        workers = worker_count(len(todo) * 30) if parallel else 1
        make = partial(_documents, config, scopes, rendered)
        documents = list(zip(todo, map_chunks(make, todo, workers), strict=True))

        if write:
            fingerprints = {o.relative: o.fingerprint for o in outputs}
            for output in todo:
                if output.scope is not None and any(p.id in unverified for p in output.scope.posts):
                    # Made from a file that changed under us: regenerate it next time.
                    fingerprints[output.relative] = ""
            # A feed this build no longer makes (its category is gone, or a format was
            # turned off) would otherwise stay online, frozen, for its readers.
            stale = sorted(cache.feeds.keys() - fingerprints.keys())
            changed = result.parsed or result.rendered or cache.sources() != files_before
            dirty = (
                changed or fingerprints != cache.feeds or not use_cache or cache.memo != memo_before
            )
            # Files read again because their stat was too recent to trust are trusted
            # once this build's time is saved: no need to read them again next time.
            dirty = dirty or cache.rechecked > 0
            old_feeds, cache.feeds = cache.feeds, fingerprints
            # Encoding the cache is CPU work and writing feeds is mostly waiting for the
            # disk, so both run at once; the cache is written only after every feed is,
            # so that it never records a feed that a crash kept from the disk.
            encoding = Background(cache.encode) if dirty else None
            try:
                writer.write_all([(o.relative, data, o.owner) for o, data in documents])
                result.removed = writer.remove_stale(stale)
            except BaseException:
                if encoding is not None:
                    encoding.join()  # its result is dropped with the build
                # A cache kept in memory (the scheduler's) must not record feeds that
                # were not written: the next build would take them as up to date.
                cache.feeds = old_feeds
                raise
            encoded = encoding.result() if encoding is not None else None
            if encoded is not None:
                cache.commit(encoded)
    finally:
        cache.close()
    cache.end_reading()
    result.written = writer.written
    result.unchanged = writer.unchanged
    result.cache = cache
    result.seconds = time.perf_counter() - started
    return result

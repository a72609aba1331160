"""``publisher build``: the pipeline from posts/ to every feed file.

Read as a pipeline: read every post, decide what is published, plan the
feeds, render only the posts that some feed shows, then write every file.
Everything is gathered before anything is written, and an unchanged feed is
neither regenerated nor rewritten.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from publisher import __version__
from publisher.cache import BuildCache
from publisher.config import Config
from publisher.errors import PostError
from publisher.feeds import MEDIA_TYPES, Scope, feed_document, opml_document, plan_scopes, post_url
from publisher.markup import Rendered, render
from publisher.output import OutputWriter, safe_join
from publisher.posts import Post, PostSet, read_body, split_posts
from publisher.sources import read_posts
from publisher.templating import environment

__all__ = ["BuildResult", "build", "load_site"]


@dataclass
class BuildResult:
    """What a build did, for the command line, the scheduler and the status file."""

    posts: PostSet
    scopes: list[Scope] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stale: list[PostError] = field(default_factory=list)
    parsed: int = 0
    rendered: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> list[PostError]:
        return self.posts.errors

    @property
    def files(self) -> int:
        return len(self.written) + len(self.unchanged)


def _settings_key(config: Config) -> str:
    """What parsed posts depend on besides their bytes."""
    return repr((__version__, str(config.site.timezone), config.permalink, config.site.url))


def load_site(
    config: Config,
    now: datetime | None = None,
    cache: BuildCache | None = None,
    keep_last_good: bool = False,
) -> tuple[PostSet, list[str], list[PostError], int]:
    """Read every post and split them at ``now``: (posts, warnings, stale errors, parsed count)."""
    now = now or datetime.now(UTC)
    cache = cache or BuildCache(settings=_settings_key(config))
    read = read_posts(config, cache, keep_last_good=keep_last_good)
    return split_posts(read.posts, read.errors, now), read.warnings, read.stale, read.parsed


def _render_key(config: Config, post: Post) -> tuple[str, str]:
    return (post.digest, f"{post_url(config, post)} {config.feeds.excerpt_length}")


def _render_posts(
    config: Config, posts: list[Post], cache: BuildCache
) -> tuple[dict[str, Rendered], list[str], int]:
    """Render each of ``posts``, reusing the cache; returns (by id, warnings, count)."""
    rendered: dict[str, Rendered] = {}
    warnings: list[str] = []
    count = 0
    for post in posts:
        key = _render_key(config, post)
        url = post_url(config, post)
        body = cache.rendered.get(key)
        if body is None:
            path = config.paths.root / post.source
            try:
                data = path.read_bytes()
            except OSError as exc:
                warnings.append(f"{post.source}:1:1: file: cannot be read: {exc.strerror}")
                data = b"---\n---\n"
            body = render(
                read_body(data),
                url,
                excerpt=post.excerpt,
                excerpt_length=config.feeds.excerpt_length,
            )
            count += 1
            if body.had_illegal_chars:
                warnings.append(
                    f"{post.source}:{post.body_line}:1: body: removed characters that XML forbids"
                )
            cache.rendered[key] = body
        rendered[post.id] = body
    return rendered, warnings, count


def _fingerprint(config: Config, scope: Scope, fmt: str) -> str:
    """Everything a feed file's bytes depend on, hashed."""
    parts = repr(
        (
            __version__,
            config.site,
            config.feeds,
            config.permalink,
            fmt,
            scope.kind,
            scope.title,
            scope.folder,
            [(p.source, p.digest) for p in scope.posts],
        )
    )
    return hashlib.blake2b(parts.encode("utf-8"), digest_size=16).hexdigest()


def _index_page(config: Config, scopes: list[Scope]) -> bytes:
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
    html = env.get_template("index.html.j2").render(site=config.site, feeds=feeds)
    return html.encode("utf-8")


def build(
    config: Config,
    *,
    now: datetime | None = None,
    use_cache: bool = True,
    write: bool = True,
    keep_last_good: bool = False,
    cache: BuildCache | None = None,
) -> BuildResult:
    """Build every feed of the site; with ``write=False`` check everything and write nothing.

    ``cache`` lets a long-running process keep its cache in memory between builds.
    """
    started = time.perf_counter()
    settings = _settings_key(config)
    if cache is None or cache.settings != settings:
        cache = BuildCache.load(config.paths.cache, settings) if use_cache else BuildCache(settings)
    posts, warnings, stale, parsed = load_site(config, now, cache, keep_last_good)
    result = BuildResult(posts=posts, warnings=warnings, stale=stale, parsed=parsed)
    result.scopes = scopes = plan_scopes(config, posts.published)

    # Work out which feeds changed before rendering anything: on a warm build
    # most feeds are unchanged and their posts need not be rendered at all.
    writer = OutputWriter(config.paths.output)
    todo: list[tuple[Scope, str, str]] = []
    fingerprints: dict[str, str] = {}
    for scope in scopes:
        for fmt in config.feeds.formats:
            relative = scope.path(fmt)
            fingerprint = _fingerprint(config, scope, fmt)
            fingerprints[relative] = fingerprint
            target = safe_join(config.paths.output, relative)
            if write and cache.feeds.get(relative) == fingerprint and target.exists():
                writer.claimed[target.as_posix()] = f"the {scope.kind} feed {scope.name!r}"
                writer.unchanged.append(relative)
            else:
                todo.append((scope, fmt, relative))

    needed: dict[str, Post] = {}
    for scope, _fmt, _relative in todo:
        for post in scope.posts:
            needed.setdefault(post.id, post)
    if not write:
        needed.update((p.id, p) for p in posts.published)
    rendered, render_warnings, result.rendered = _render_posts(config, list(needed.values()), cache)
    result.warnings.extend(render_warnings)
    # Keep rendered bodies only for posts some feed still shows, so the cache stays small.
    shown = {_render_key(config, p) for scope in scopes for p in scope.posts}
    cache.rendered = {k: v for k, v in cache.rendered.items() if k in shown}

    documents: list[tuple[str, bytes, str]] = []
    for scope, fmt, relative in todo:
        data = feed_document(config, scope, fmt, rendered)
        documents.append((relative, data, f"the {scope.kind} feed {scope.name!r}"))
    documents.append(("feeds.opml", opml_document(config, scopes), "the OPML list"))
    documents.append(("index.html", _index_page(config, scopes), "the feed index page"))

    if write:
        for relative, data, owner in documents:
            writer.write(relative, data, owner)
        cache.feeds = fingerprints
        if use_cache:
            cache.save(config.paths.cache)
    result.written = writer.written
    result.unchanged = writer.unchanged
    result.seconds = time.perf_counter() - started
    return result

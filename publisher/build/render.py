"""The render step of a build: post bodies, then the bytes of every output to make.

Only the posts that some output being made shows are rendered, each body
from the cache when it was rendered before; the feeds, the OPML list and the
index page are then made from those bodies. On a cold build both run in
forked workers (see :mod:`publisher.build.workers`).

What it must never do: cache a body rendered from a file that no longer
matches the post parsed from it (a file changed under the build, or a broken
post served in its last good version), or write anything: the write step
(:func:`publisher.build.targets.write_outputs`) does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

from publisher.build.cache import BuildCache
from publisher.build.targets import Output
from publisher.build.workers import map_chunks, worker_count
from publisher.config import Config
from publisher.feeds import MEDIA_TYPES, Scope, feed_document, opml_document, post_url
from publisher.site.markup import Rendered, render
from publisher.site.posts import Post, content_digest, read_body

__all__ = ["Rendering", "render_outputs"]


class Rendering(NamedTuple):
    """What the render step made."""

    documents: list[tuple[Output, bytes]]  # each output to write, with its bytes
    warnings: list[str]
    rendered: int  # bodies rendered (the rest came from the cache)
    unverified: set[str]  # ids of posts whose file no longer matched what was parsed


def render_outputs(
    config: Config, scopes: list[Scope], todo: list[Output], cache: BuildCache, parallel: bool
) -> Rendering:
    """Render the bodies the outputs in ``todo`` show, then make those outputs' bytes."""
    needed = {p.id: p for o in todo if o.scope for p in o.scope.posts}
    rendered, warnings, count, unverified = _render_posts(
        config, list(needed.values()), cache, parallel
    )
    # Keep rendered bodies only for posts some feed still shows, so the cache stays small.
    shown = {_render_key(config, p) for scope in scopes for p in scope.posts}
    cache.keep_bodies(shown)

    # An XML feed costs feedgen and lxml some 2 ms, thirty times the parse of a post.
    workers = worker_count(len(todo) * 30) if parallel else 1
    make = partial(_documents, config, scopes, rendered)
    documents = list(zip(todo, map_chunks(make, todo, workers), strict=True))
    return Rendering(documents, warnings, count, unverified)


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
    config: Config, scopes: list[Scope], rendered: dict[str, Rendered], outputs: Sequence[Output]
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

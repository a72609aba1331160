"""The render step of a build: post bodies, then the bytes of every output to make.

Only the posts that some output being made shows are rendered, each body
from the cache when it was rendered before; the feeds, the OPML list and the
index page are then made from those bodies. On a cold build both run in
forked workers (see :mod:`publisher.build.workers`).

What it must never do: cache a body rendered from a file that no longer
matches the post parsed from it (a file changed under the build, or a broken
post served in its last good version), or put anything where a reader sees
it: archive pages may be staged as temporary files (removed again if the
build fails), but only the write step
(:func:`publisher.build.targets.write_outputs`) renames them into place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

from publisher.build.cache import BuildCache
from publisher.build.output import OutputWriter, Staged, discard_files
from publisher.build.targets import Output
from publisher.build.workers import map_chunks, worker_count
from publisher.config import Config
from publisher.feeds import (
    MEDIA_TYPES,
    ArchiveWriter,
    Scope,
    archive_links,
    feed_document,
    in_full,
    opml_document,
    post_url,
)
from publisher.site.markup import Rendered, render
from publisher.site.posts import Post, content_digest, read_body

__all__ = ["Rendering", "render_outputs"]


class Rendering(NamedTuple):
    """What the render step made."""

    # Each output to write, with its bytes or, for archive pages made with a
    # writer, its staged temporary file.
    documents: list[tuple[Output, bytes | Staged]]
    warnings: list[str]
    rendered: int  # bodies rendered (the rest came from the cache)
    unverified: set[str]  # files of posts that no longer matched what was parsed


#: A published post by its source file (archive pages name their posts by file).
PostLookup = Callable[[str], Post]


def render_outputs(
    config: Config,
    scopes: list[Scope],
    todo: list[Output],
    cache: BuildCache,
    parallel: bool,
    lookup: PostLookup,
    *,
    every_post: Sequence[Post] | None = None,
    writer: OutputWriter | None = None,
) -> Rendering:
    """Render the bodies the outputs in ``todo`` show, then make those outputs' bytes.

    ``every_post`` holds every published post when the build read them all;
    with full-content archives it keeps their bodies in the cache. With a
    ``writer`` the archive pages are staged as temporary files where they are
    made (in the workers, on a cold build), for the write step to rename.
    """
    full_archives = config.feeds.archive and config.feeds.archive_content == "full"
    needed = {p.id: p for o in todo if o.scope and o.page is None for p in in_full(config, o.scope)}
    if full_archives:
        for output in todo:
            if output.page is not None:
                needed.update((p.id, p) for p in map(lookup, output.page.sources))
    rendered, warnings, count, unverified = _render_posts(
        config, list(needed.values()), cache, parallel
    )
    # Keep rendered bodies only for posts some feed still shows, so the cache stays small.
    if not full_archives:
        cache.keep_bodies(
            {_render_key(config, p) for scope in scopes for p in in_full(config, scope)}
        )
    elif every_post is not None:  # archive pages show every post
        cache.keep_bodies({_render_key(config, p) for p in every_post})
    # else a warm build that moved no post: the bodies the cache holds are still shown

    documents = _make_documents(config, scopes, todo, rendered, lookup, parallel, writer)
    return Rendering(documents, warnings, count, unverified)


def _make_documents(
    config: Config,
    scopes: list[Scope],
    todo: list[Output],
    rendered: dict[str, Rendered],
    lookup: PostLookup,
    parallel: bool,
    writer: OutputWriter | None,
) -> list[tuple[Output, bytes | Staged]]:
    """Each output of ``todo`` with its bytes (or staged file): current feeds first.

    The archive pages go to the workers grouped by format, because a post's
    entry is made once per format in each process: pages of one format split
    between processes would make the entries of their posts twice.
    """
    pages = sorted(
        (o for o in todo if o.page is not None), key=lambda o: _FORMAT_ORDER.get(o.fmt, 9)
    )
    ordered = [o for o in todo if o.page is None] + pages
    # A current feed costs feedgen and lxml some 7 ms (a hundred parses of a post),
    # an archive page a tenth of that: the workers get equal shares of the cost.
    weights = [1 if o.page is not None else 10 for o in ordered]
    workers = worker_count(sum(weights) * 10) if parallel else 1
    stage = writer.stage if writer is not None else None
    make = partial(_documents, config, scopes, rendered, lookup, stage)
    made = map_chunks(make, ordered, workers, weights=weights, discard=_discard)
    return list(zip(ordered, made, strict=True))


_FORMAT_ORDER = {"json": 0, "atom": 1, "rss": 2}


def _discard(documents: Sequence[bytes | Staged]) -> None:
    """Remove the temporary files of staged pages (a build that failed after making them)."""
    discard_files(d.temp for d in documents if isinstance(d, Staged) and d.temp)


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

    Returns the bodies by post id, warnings, how many were rendered, and the
    files of posts that no longer matched what was parsed (not cached).
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
            unverified.add(post.source)
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
    config: Config,
    scopes: list[Scope],
    rendered: dict[str, Rendered],
    lookup: PostLookup,
    stage: Callable[[str, bytes], Staged] | None,
    outputs: Sequence[Output],
) -> list[bytes | Staged]:
    """The bytes of each of ``outputs`` (run in worker processes on a cold build).

    With ``stage`` each archive page is staged as soon as it is made: its bytes
    need not travel back from a worker, nor wait in memory for the others.
    If anything fails, what this call staged is removed.
    """
    documents: list[bytes | Staged] = []
    # One writer for every page made here: a post's entry is made once per format.
    archives = ArchiveWriter(config, rendered)
    try:
        for output in outputs:
            if output.page is not None:
                posts = [lookup(source) for source in reversed(output.page.sources)]
                page = archives.document(output.page, output.fmt, posts)
                documents.append(page if stage is None else stage(output.relative, page))
            elif output.scope is not None:
                links = archive_links(config, output.scope, output.fmt)
                documents.append(feed_document(config, output.scope, output.fmt, rendered, links))
            elif output.relative == "feeds.opml":
                documents.append(opml_document(config, scopes))
            else:
                documents.append(_index_page(config, scopes))
    except BaseException:
        _discard(documents)
        raise
    return documents

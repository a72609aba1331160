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
    feed_parts,
    in_full,
    opml_document,
    post_url,
)
from publisher.feeds.entries import XML_FORMATS, EntryMaker, entry_settings
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
    # Each post some current feed being made shows in full, and the formats that show it.
    shows: dict[str, set[str]] = {}
    needed: dict[str, Post] = {}
    for output in todo:
        if output.scope and output.page is None:
            for post in in_full(config, output.scope):
                needed[post.id] = post
                shows.setdefault(post.id, set()).add(output.fmt)
    if full_archives:
        for output in todo:
            if output.page is not None:
                for post in map(lookup, output.page.sources):
                    needed[post.id] = post
                    shows.setdefault(post.id, set()).add("body")  # the archive writer's
    made = _render_posts(config, list(needed.values()), shows, cache, parallel)
    # Keep rendered bodies only for posts some feed still shows, so the cache stays small.
    if not full_archives:
        cache.keep_bodies(
            {_render_key(config, p) for scope in scopes for p in in_full(config, scope)}
        )
    elif every_post is not None:  # archive pages show every post
        cache.keep_bodies({_render_key(config, p) for p in every_post})
    # else a warm build that moved no post: the bodies the cache holds are still shown

    documents = _make_documents(
        config, scopes, todo, made.bodies, made.entries, lookup, parallel, writer
    )
    return Rendering(documents, made.warnings, made.rendered, made.unverified)


def _make_documents(
    config: Config,
    scopes: list[Scope],
    todo: list[Output],
    rendered: dict[str, Rendered],
    entries: dict[tuple[str, str, bool], bytes],
    lookup: PostLookup,
    parallel: bool,
    writer: OutputWriter | None,
) -> list[tuple[Output, bytes | Staged]]:
    """Each output of ``todo`` with its bytes (or staged file): current feeds first.

    The outputs go to the workers grouped by format, because a post's entry is
    made once per format in each process (those the render step did not make:
    summary entries, archive entries): outputs of one format split between
    processes would make the entries of their posts twice.
    """
    ordered = sorted(todo, key=lambda o: (_FORMAT_ORDER.get(o.fmt, 9), o.page is not None))
    # A current feed costs feedgen and lxml some 7 ms (a hundred parses of a post),
    # an archive page a tenth of that: the workers get equal shares of the cost.
    weights = [1 if o.page is not None else 10 for o in ordered]
    workers = worker_count(sum(weights) * 10) if parallel else 1
    stage = writer.stage if writer is not None else None
    make = partial(_documents, config, scopes, rendered, entries, lookup, stage)
    made = map_chunks(make, ordered, workers, weights=weights, discard=_discard)
    return list(zip(ordered, made, strict=True))


_FORMAT_ORDER = {"json": 0, "atom": 1, "rss": 2}


def _discard(documents: Sequence[bytes | Staged]) -> None:
    """Remove the temporary files of staged pages (a build that failed after making them)."""
    discard_files(d.temp for d in documents if isinstance(d, Staged) and d.temp)


def _render_key(config: Config, post: Post) -> tuple[str, str]:
    return (post.digest, f"{post_url(config, post)} {config.feeds.excerpt_length}")


def _render_chunk(
    config: Config, posts: Sequence[tuple[Post, tuple[str, ...]]]
) -> list[tuple[Rendered, str, bool, dict[str, bytes]]]:
    """Render posts from their files: (body, warning or "", whether the file was as parsed,
    the post's full entry in each of the given formats).

    A file whose bytes no longer hash to the post's digest changed after it was
    parsed, or is a broken post served in its last good version: its body is
    rendered from what is there now, but must not be cached under the post's key.
    """
    results = []
    maker = EntryMaker(config)
    for post, formats in posts:
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
        entries = {fmt: maker.make(fmt, post, body) for fmt in formats}
        results.append((body, warning, verified, entries))
    return results


def _entry_chunk(
    config: Config, posts: Sequence[tuple[Post, Rendered, tuple[str, ...]]]
) -> list[dict[str, bytes]]:
    """The full entries of posts whose bodies are known, in the given formats."""
    maker = EntryMaker(config)
    return [{fmt: maker.make(fmt, post, body) for fmt in formats} for post, body, formats in posts]


class _Made(NamedTuple):
    """What the render step made of the posts shown in full."""

    bodies: dict[str, Rendered]  # by post id: those a document needs (JSON, archives)
    entries: dict[tuple[str, str, bool], bytes]  # (format, post id, True) -> entry bytes
    warnings: list[str]
    rendered: int
    unverified: set[str]


def _render_posts(
    config: Config,
    posts: list[Post],
    shows: dict[str, set[str]],
    cache: BuildCache,
    parallel: bool,
) -> _Made:
    """Each of ``posts``' full entry in every XML format that ``shows`` it, and its body
    where one is needed: from the cache, else made (rendering in workers on a cold build).

    A post whose entries the cache holds for every format shown needs no body, unless
    a JSON feed or an archive page shows it. The rest are rendered, counted, and
    cached unless their file no longer matched what was parsed (``unverified``).
    """
    settings = entry_settings(config)
    bodies: dict[str, Rendered] = {}
    entries: dict[tuple[str, str, bool], bytes] = {}
    to_render: list[tuple[Post, tuple[str, ...]]] = []
    to_make: list[tuple[Post, Rendered, tuple[str, ...]]] = []
    for post in posts:
        key = _render_key(config, post)
        formats = shows.get(post.id, set())
        cached = cache.get_entries(key, settings) if formats & set(XML_FORMATS) else {}
        missing = tuple(f for f in XML_FORMATS if f in formats and f not in cached)
        entries.update(((fmt, post.id, True), data) for fmt, data in cached.items())
        if not missing and not formats - set(XML_FORMATS):
            continue  # every document showing it takes its cached entries
        body = cache.get_body(key)
        if body is None:
            to_render.append((post, missing))
            continue
        bodies[post.id] = body
        if missing:
            to_make.append((post, body, missing))
    # Rendering is ~8x parsing, and an entry per format costs a tenth of rendering.
    workers = worker_count(len(to_render) * 8) if parallel else 1
    warnings = []
    unverified: set[str] = set()
    made = map_chunks(partial(_render_chunk, config), to_render, workers)
    for (post, _), (body, warning, verified, new) in zip(to_render, made, strict=True):
        key = _render_key(config, post)
        if verified:
            cache.put_body(key, body)
            cache.put_entries(key, settings, new)
        else:
            unverified.add(post.source)
        bodies[post.id] = body
        entries.update(((fmt, post.id, True), data) for fmt, data in new.items())
        if warning:
            warnings.append(warning)
    workers = worker_count(len(to_make)) if parallel else 1
    for (post, _, _), new in zip(
        to_make, map_chunks(partial(_entry_chunk, config), to_make, workers), strict=True
    ):
        cache.put_entries(_render_key(config, post), settings, new)
        entries.update(((fmt, post.id, True), data) for fmt, data in new.items())
    return _Made(bodies, entries, warnings, len(to_render), unverified)


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
    entries: dict[tuple[str, str, bool], bytes],
    lookup: PostLookup,
    stage: Callable[[str, bytes | Sequence[bytes]], Staged] | None,
    outputs: Sequence[Output],
) -> list[bytes | Staged]:
    """The bytes of each of ``outputs`` (run in worker processes on a cold build).

    With ``stage`` each archive page is staged as soon as it is made: its bytes
    need not travel back from a worker, nor wait in memory for the others.
    If anything fails, what this call staged is removed.
    """
    documents: list[bytes | Staged] = []
    # One writer for every page made here, and one maker of the current feeds' entries
    # the render step did not make: a post's entry is made once per format.
    archives = ArchiveWriter(config, rendered)
    maker = EntryMaker(config, rendered, entries)
    try:
        for output in outputs:
            if output.page is not None:
                posts = [lookup(source) for source in reversed(output.page.sources)]
                page = archives.document(output.page, output.fmt, posts)
                documents.append(page if stage is None else stage(output.relative, page))
            elif output.scope is not None:
                links = archive_links(config, output.scope, output.fmt)
                parts = feed_parts(config, output.scope, output.fmt, rendered, links, maker)
                # Staged where it is made: a feed of a whole history need not travel back.
                documents.append(
                    b"".join(parts) if stage is None else stage(output.relative, parts)
                )
            elif output.relative == "feeds.opml":
                documents.append(opml_document(config, scopes))
            else:
                documents.append(_index_page(config, scopes))
    except BaseException:
        _discard(documents)
        raise
    return documents

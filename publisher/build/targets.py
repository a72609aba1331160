"""The files a build makes: what each depends on, which need making, and writing them.

Every output (each feed, the OPML list, the index page) gets a fingerprint of
everything its bytes depend on. A file whose fingerprint the cache recorded
and which is still on disk is unchanged: it is neither made nor written, and
the posts only it shows need not be rendered. :func:`write_outputs` writes the
rest, deletes what this build no longer makes, and saves the cache.

What it must never do: record a fingerprint for a file that was not written
(the next build would take it as up to date), or save a cache that records
a feed before that feed is on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from publisher import __version__
from publisher.build.cache import BuildCache
from publisher.build.output import OutputWriter, Staged, discard_files
from publisher.build.workers import Background
from publisher.config import Config
from publisher.feeds import Page, Scope, full_pages, plan_pages

__all__ = ["Output", "plan_outputs", "to_make", "write_outputs"]


@dataclass
class Output:
    """One file a build may write: where, what it depends on, and how to make it."""

    relative: str
    fingerprint: str
    owner: str
    scope: Scope | None = None  # a current feed's or an archive page's
    fmt: str = ""
    page: Page | None = None  # an archive page of ``scope``

    def sources(self) -> tuple[str, ...]:
        """The post files whose content this output shows."""
        if self.page is not None:
            return self.page.sources
        return tuple(p.source for p in self.scope.posts) if self.scope is not None else ()


def _fingerprint(*parts: object) -> str:
    """A short hash of everything an output file's bytes depend on."""
    text = repr((__version__, *parts))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _scope_identity(scope: Scope) -> tuple[str, str, str, str]:
    return (scope.kind, scope.name, scope.folder, scope.title)


def _feed_fingerprint(settings: str, scope: Scope, fmt: str, archived: int) -> str:
    """What one feed depends on: ``settings`` (see build) and each post's file and hash.

    A post is named by its file and the hash of its bytes rather than by its
    fields: everything parsed from it follows from those and the settings.
    ``archived`` is the number of full archive pages, which its
    ``prev-archive`` link names.
    """
    posts = [(p.source, p.digest) for p in scope.posts]
    return _fingerprint(settings, fmt, _scope_identity(scope), archived, posts)


def _page_key(settings: str, page: Page, digests: Mapping[str, str]) -> str:
    """What an archive page depends on in every format: its place and its posts' bytes.

    An empty open page takes its time from the current feed, so it depends on
    that feed's posts too. A site has hundreds of pages, so the key is made
    with one join rather than a repr of tuples.
    """
    sources = page.sources if page.sources else tuple(p.source for p in page.scope.posts)
    parts = [settings, repr(_scope_identity(page.scope)), str(page.number), str(page.closed)]
    parts += sources
    parts += [digests[source] for source in sources]
    text = "\0".join(parts)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _touched_pages(config: Config, scope: Scope, edited: Set[str] | None) -> set[int] | None:
    """The numbers of ``scope``'s pages that hold an ``edited`` file; None if not known."""
    if edited is None:
        return None
    size = config.feeds.archive_page_size
    touched = set()
    for source in edited:
        try:
            touched.add(scope.history.index(source) // size + 1)
        except ValueError:
            continue  # not in this scope
    return touched


def _template_stamp(config: Config, name: str) -> tuple[int, int]:
    """Stat of a user's override of a built-in template, so that editing it rebuilds."""
    try:
        st = (config.paths.templates / name).stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def plan_outputs(
    config: Config,
    scopes: list[Scope],
    digests: Mapping[str, str],
    *,
    recorded: Mapping[str, str] | None = None,
    edited: Set[str] | None = None,
) -> list[Output]:
    """Every file the build makes of ``scopes``, with its fingerprint.

    ``digests`` gives the content hash of every published post by source file
    (archive pages name posts by file only). When the last plan was reused,
    ``edited`` holds the files read again and ``recorded`` the fingerprints the
    cache holds: an archive page that holds none of them keeps its recorded
    fingerprint instead of hashing its fifty posts again (a site has hundreds).
    """
    feed_settings = repr((config.site, config.feeds, config.permalink, config.paths.output))
    formats = config.feeds.formats
    outputs = [
        Output(
            scope.path(fmt),
            _feed_fingerprint(feed_settings, scope, fmt, full_pages(config, scope)),
            f"the {scope.kind} feed {scope.name!r}",
            scope,
            fmt,
        )
        for scope in scopes
        for fmt in formats
    ]
    for scope in scopes:
        pages = plan_pages(config, scope)
        touched = _touched_pages(config, scope, edited) if recorded is not None else None
        for page in pages:
            owner = f"the {scope.kind} feed {scope.name!r}, archive page {page.number}"
            paths = [page.path(fmt) for fmt in formats]
            known = (
                [recorded.get(path, "") for path in paths]
                if recorded is not None
                and touched is not None
                and page.sources  # an empty open page follows the current feed
                and page.number not in touched
                else []
            )
            if not known or not all(known):
                key = _page_key(feed_settings, page, digests)
                known = [_fingerprint("page", fmt, key) for fmt in formats]
            outputs.extend(
                Output(path, fingerprint, owner, scope, fmt, page)
                for path, fmt, fingerprint in zip(paths, formats, known, strict=True)
            )
    listing = [(s.kind, s.name, s.folder, s.title) for s in scopes]
    stamp = (config.site, config.feeds.formats, config.paths.output, listing)
    outputs.append(Output("feeds.opml", _fingerprint("opml", *stamp), "the OPML list"))
    outputs.append(
        Output(
            "index.html",
            _fingerprint("index", *stamp, _template_stamp(config, "index.html.j2")),
            "the feed index page",
        )
    )
    return outputs


def to_make(
    outputs: list[Output], writer: OutputWriter, recorded: dict[str, str] | None
) -> list[Output]:
    """Claim every output in ``writer``; those that must be made, the rest noted unchanged.

    ``recorded`` is the cache's fingerprint of each file as last written; None
    when nothing will be written, so that everything is made and checked.
    """
    todo: list[Output] = []
    for output in outputs:
        writer.claim(output.relative, output.owner)
        if (
            recorded is not None
            and recorded.get(output.relative) == output.fingerprint
            and writer.present(output.relative)
        ):
            writer.unchanged.append(output.relative)
        else:
            todo.append(output)
    return todo


#: From this many files on, the cache is encoded before they are written, not meanwhile.
_OVERLAP_FILES = 200


def write_outputs(
    writer: OutputWriter,
    cache: BuildCache,
    outputs: list[Output],
    documents: Sequence[tuple[Output, bytes | Staged]],
    unverified: set[str],
    *,
    learned: bool,
) -> list[str]:
    """Write ``documents``, delete stale feeds, then save the cache; returns the files removed.

    Staged documents (archive pages made with the writer) are renamed into
    place with the rest, or their temporary files removed if this fails.

    ``unverified`` holds the source files of posts whose file changed after
    it was parsed; ``learned`` says whether the cache holds anything new besides the
    outputs' fingerprints (then it is saved even if those did not change).
    """
    fingerprints = {o.relative: o.fingerprint for o in outputs}
    for output, _ in documents:
        if unverified and not unverified.isdisjoint(output.sources()):
            # Made from a file that changed under us: regenerate it next time.
            fingerprints[output.relative] = ""
    # A feed this build no longer makes (its category is gone, or a format was
    # turned off) would otherwise stay online, frozen, for its readers.
    stale = sorted(cache.feeds.keys() - fingerprints.keys())
    dirty = learned or fingerprints != cache.feeds
    old_feeds, cache.feeds = cache.feeds, fingerprints
    # Encoding the cache is CPU work and writing a few feeds is mostly waiting for
    # the disk, so both run at once. Not for many files (a cold build's archive
    # pages): each of their system calls would wait for the encoding thread to
    # hand back the GIL, which made 1,517 files take 1.4 s to write instead of 0.3.
    # The cache is written only after every feed is, so that it never records a
    # feed that a crash kept from the disk.
    overlap = dirty and len(documents) < _OVERLAP_FILES
    try:
        encoded = cache.encode() if dirty and not overlap else None
    except BaseException:
        discard_files(d.temp for _, d in documents if isinstance(d, Staged) and d.temp)
        cache.feeds = old_feeds
        raise
    encoding = Background(cache.encode) if overlap else None
    try:
        writer.write_all([(o.relative, data, o.owner) for o, data in documents])
        removed = writer.remove_stale(stale)
    except BaseException:
        if encoding is not None:
            encoding.join()  # its result is dropped with the build
        # A cache kept in memory (the scheduler's) must not record feeds that
        # were not written: the next build would take them as up to date.
        cache.feeds = old_feeds
        raise
    if encoding is not None:
        encoded = encoding.result()
    if encoded is not None:
        cache.commit(encoded)
    return removed

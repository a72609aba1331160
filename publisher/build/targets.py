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
from collections.abc import Sequence
from dataclasses import dataclass

from publisher import __version__
from publisher.build.cache import BuildCache
from publisher.build.output import OutputWriter
from publisher.build.workers import Background
from publisher.config import Config
from publisher.feeds import Scope

__all__ = ["Output", "plan_outputs", "to_make", "write_outputs"]


@dataclass
class Output:
    """One file a build may write: where, what it depends on, and how to make it."""

    relative: str
    fingerprint: str
    owner: str
    scope: Scope | None = None
    fmt: str = ""


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


def plan_outputs(config: Config, scopes: list[Scope]) -> list[Output]:
    """Every file the build makes of ``scopes``, with its fingerprint."""
    feed_settings = repr((config.site, config.feeds, config.permalink, config.paths.output))
    outputs = [
        Output(
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
        target = writer.claim(output.relative, output.owner)
        if (
            recorded is not None
            and recorded.get(output.relative) == output.fingerprint
            and target.exists()
        ):
            writer.unchanged.append(output.relative)
        else:
            todo.append(output)
    return todo


def write_outputs(
    writer: OutputWriter,
    cache: BuildCache,
    outputs: list[Output],
    documents: Sequence[tuple[Output, bytes]],
    unverified: set[str],
    *,
    learned: bool,
) -> list[str]:
    """Write ``documents``, delete stale feeds, then save the cache; returns the files removed.

    ``unverified`` holds the ids of posts whose file changed after it was
    parsed; ``learned`` says whether the cache holds anything new besides the
    outputs' fingerprints (then it is saved even if those did not change).
    """
    fingerprints = {o.relative: o.fingerprint for o in outputs}
    for output, _ in documents:
        if output.scope is not None and any(p.id in unverified for p in output.scope.posts):
            # Made from a file that changed under us: regenerate it next time.
            fingerprints[output.relative] = ""
    # A feed this build no longer makes (its category is gone, or a format was
    # turned off) would otherwise stay online, frozen, for its readers.
    stale = sorted(cache.feeds.keys() - fingerprints.keys())
    dirty = learned or fingerprints != cache.feeds
    old_feeds, cache.feeds = cache.feeds, fingerprints
    # Encoding the cache is CPU work and writing feeds is mostly waiting for the
    # disk, so both run at once; the cache is written only after every feed is,
    # so that it never records a feed that a crash kept from the disk.
    encoding = Background(cache.encode) if dirty else None
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
    encoded = encoding.result() if encoding is not None else None
    if encoded is not None:
        cache.commit(encoded)
    return removed

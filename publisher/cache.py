"""The build cache: what earlier builds learned, so a warm build does little.

Three things are kept, each keyed so that a stale entry can never be used:
parsed posts by file stat and content hash, rendered bodies by content hash
and URL, and each output file's input fingerprint. A corrupt or foreign cache
is ignored, never trusted; the build then runs cold.

The file holds plain tuples of strings and numbers in :mod:`marshal` format:
loading ten thousand posts that way takes a fraction of what unpickling the
objects takes, and a cache file cannot run code when it is read.
"""

from __future__ import annotations

import contextlib
import marshal
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from publisher import __version__
from publisher.errors import PostError
from publisher.markup import Rendered
from publisher.output import atomic_write
from publisher.posts import Post

__all__ = ["BuildCache", "FileEntry", "entry_from_tuple", "entry_to_tuple"]

_FORMAT = (2, __version__)
_NAME = "build.marshal"
_POST_FIELDS = tuple(f.name for f in fields(Post))
_DATE_FIELDS = frozenset({"date", "updated"})


@dataclass
class FileEntry:
    """One post file as last read: its stat, its hash and what parsing it gave."""

    mtime_ns: int
    size: int
    digest: str
    result: Post | PostError
    last_good: Post | None = None  # kept so that a post broken by an edit stays in the feeds
    saved: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)


def _post_to_tuple(post: Post) -> tuple[Any, ...]:
    values = []
    for name in _POST_FIELDS:
        value = getattr(post, name)
        values.append(value.isoformat() if isinstance(value, datetime) else value)
    return tuple(values)


def _post_from_tuple(values: tuple[Any, ...]) -> Post:
    state = dict(zip(_POST_FIELDS, values, strict=True))
    for name in _DATE_FIELDS:
        if state[name] is not None:
            state[name] = datetime.fromisoformat(state[name])
    # These values were a valid Post when saved; skipping the frozen dataclass's
    # __init__ (one object.__setattr__ per field) halves the time to load a cache.
    post: Post = object.__new__(Post)
    post.__dict__.update(state)
    return post


def entry_to_tuple(entry: FileEntry) -> tuple[Any, ...]:
    """A FileEntry as plain values (for the cache file and for worker processes)."""
    if entry.saved is not None:
        return entry.saved  # unchanged since it was loaded
    result = entry.result
    if isinstance(result, Post):
        outcome: tuple[Any, ...] = ("post", _post_to_tuple(result))
    else:
        outcome = ("error", (result.path, result.message, result.line, result.col, result.field))
    if entry.last_good is None:
        good = None
    elif entry.last_good is result:
        good = True  # the usual case: don't store the same post twice
    else:
        good = _post_to_tuple(entry.last_good)
    return (entry.mtime_ns, entry.size, entry.digest, outcome, good)


def entry_from_tuple(values: tuple[Any, ...]) -> FileEntry:
    """The inverse of :func:`entry_to_tuple`."""
    mtime_ns, size, digest, (kind, payload), good = values
    result: Post | PostError = _post_from_tuple(payload) if kind == "post" else PostError(*payload)
    if good is True:
        last_good: Post | None = result if isinstance(result, Post) else None
    else:
        last_good = _post_from_tuple(good) if good is not None else None
    return FileEntry(mtime_ns, size, digest, result, last_good, saved=values)


@dataclass
class BuildCache:
    """Everything a build may reuse from the last one with the same settings."""

    settings: str = ""
    files: dict[str, FileEntry] = field(default_factory=dict)
    rendered: dict[tuple[str, str], Rendered] = field(default_factory=dict)
    feeds: dict[str, str] = field(default_factory=dict)  # output path -> input fingerprint

    @classmethod
    def load(cls, folder: Path, settings: str) -> BuildCache:
        """The cache in ``folder`` if it was made with the same ``settings``, else an empty one."""
        try:
            stored = marshal.loads((folder / _NAME).read_bytes())
            format_, stored_settings, files, rendered, feeds = stored
            if format_ != _FORMAT or stored_settings != settings:
                # Post URLs, dates and ids depend on the settings: start cold.
                return cls(settings=settings)
            return cls(
                settings=settings,
                files={source: entry_from_tuple(entry) for source, entry in files.items()},
                rendered={tuple(key): Rendered(*value) for key, value in rendered},
                feeds=dict(feeds),
            )
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            return cls(settings=settings)

    def save(self, folder: Path) -> None:
        """Write the cache atomically; a failure to save only costs the next build time."""
        files = {source: entry_to_tuple(entry) for source, entry in self.files.items()}
        rendered = [
            (key, (body.html, body.summary, body.had_illegal_chars))
            for key, body in self.rendered.items()
        ]
        data = marshal.dumps((_FORMAT, self.settings, files, rendered, self.feeds))
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / _NAME, data)

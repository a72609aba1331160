"""The build cache: what earlier builds learned, so a warm build does little.

Four things are kept, each keyed so that a stale entry can never be used:
parsed posts by file stat and content hash, rendered bodies by content hash
and URL, each output file's input fingerprint, and the last build's plan
(:mod:`publisher.build.plan`). A stat is trusted only for a file last modified
well before the build that recorded it, as git does with its index. A
corrupt or foreign cache is ignored, never trusted; the build then runs cold.

The file holds plain tuples of strings and numbers in :mod:`marshal` format:
loading ten thousand posts that way takes a fraction of what unpickling the
objects takes, and a cache file cannot run code when it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from publisher import __version__
from publisher.build.plan import Memo, ScopePlan, plan_key
from publisher.errors import PostError
from publisher.site.markup import Rendered
from publisher.site.posts import Post

__all__ = ["BuildCache", "FileEntry", "entry_from_tuple", "entry_to_tuple"]

_FORMAT = (7, __version__)
_NAME = "build.marshal"
_DELTA = "build.delta.marshal"
_BODIES = "bodies.sqlite"
# More than the coarsest timestamp granularity of common file systems (FAT: 2 s).
_RACY_NS = 2_000_000_000
# Version 2 of the marshal format shares no objects: writing freshly parsed posts
# takes half the time of the default, whose sharing table sees every string that
# a live post also holds, and reading is no slower.
_MARSHAL = 2
# Past this many changed entries the base index is rewritten and the delta dropped.
_MAX_DELTA = 500
_DATE = Post._fields.index("date")
_UPDATED = Post._fields.index("updated")


@dataclass
class FileEntry:
    """One post file as last read: its stat, its hash and what parsing it gave."""

    mtime_ns: int
    size: int
    digest: str
    result: Post | PostError
    last_good: Post | None = None  # kept so that a post broken by an edit stays in the feeds
    key: str = ""  # memo.plan_key(result), worked out once
    saved: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)
    dirty: bool = field(default=False, compare=False, repr=False)  # not yet in the index file

    def __post_init__(self) -> None:
        if not self.key:
            self.key = plan_key(self.result)

    def record(self) -> tuple[int, int, str, str]:
        """(mtime_ns, size, digest, plan key): what a build compares without the post."""
        return (self.mtime_ns, self.size, self.digest, self.key)


def _post_to_tuple(post: Post) -> tuple[Any, ...]:
    values = list(post)
    values[_DATE] = post.date.isoformat()
    values[_UPDATED] = post.updated.isoformat() if post.updated is not None else None
    return tuple(values)


def _post_from_tuple(values: tuple[Any, ...]) -> Post:
    fields = list(values)
    fields[_DATE] = datetime.fromisoformat(fields[_DATE])
    if fields[_UPDATED] is not None:
        fields[_UPDATED] = datetime.fromisoformat(fields[_UPDATED])
    return Post._make(fields)


def entry_to_tuple(entry: FileEntry) -> tuple[Any, ...]:
    """A FileEntry as plain values (for the cache file and for worker processes)."""
    if entry.saved is not None:
        return entry.saved  # unchanged since it was loaded
    result = entry.result
    if isinstance(result, Post):
        outcome: tuple[Any, ...] = ("post", _post_to_tuple(result))
    else:
        outcome = ("error", (result.path, result.message, result.line, result.col, result.field))
    good: tuple[Any, ...] | bool | None
    if entry.last_good is None:
        good = None
    elif entry.last_good is result:
        good = True  # the usual case: don't store the same post twice
    else:
        good = _post_to_tuple(entry.last_good)
    return (entry.mtime_ns, entry.size, entry.digest, entry.key, outcome, good)


def entry_from_tuple(values: tuple[Any, ...], *, dirty: bool = False) -> FileEntry:
    """The inverse of :func:`entry_to_tuple`; ``dirty`` marks a file just read, not yet saved."""
    mtime_ns, size, digest, key, (kind, payload), good = values
    result: Post | PostError = _post_from_tuple(payload) if kind == "post" else PostError(*payload)
    if good is True:
        last_good: Post | None = result if isinstance(result, Post) else None
    else:
        last_good = _post_from_tuple(good) if good is not None else None
    return FileEntry(mtime_ns, size, digest, result, last_good, key, saved=values, dirty=dirty)


def _body_name(key: tuple[str, str]) -> str:
    return hashlib.blake2b("\0".join(key).encode("utf-8"), digest_size=16).hexdigest()


class BuildCache:
    """Everything a build may reuse from the last one with the same settings.

    Parsed posts and output fingerprints live in an index that every build
    reads: a base file, rewritten now and then, and a small delta file with the
    entries changed since, so that a warm build after one edit writes a few
    kilobytes instead of the whole index. In the base, each file's stat and
    plan key are read at once, while its parsed post sits in one marshalled
    blob that is decoded only when a build needs every post (see
    :mod:`publisher.build.plan`). Rendered bodies are large and a warm build needs
    few of them, so they live in an SQLite file, each read on demand.
    """

    def __init__(
        self, settings: str = "", folder: Path | None = None, *, stored_bodies: bool = True
    ) -> None:
        self.settings = settings
        self.folder = folder  # where the cache is read from and saved to; None: memory only
        # False for a build without the cache: bodies rendered by an older version
        # of a library must be rendered again, not read back.
        self.stored_bodies = stored_bodies
        self.feeds: dict[str, str] = {}  # output path -> input fingerprint
        self.memo: Memo | None = None  # the last plan; None when it must be made again
        # When the build that saves this cache began reading files (time.time_ns()).
        self.read_at = 0
        # A stat recorded by the last saved build is trusted only for files last
        # modified before this: a second save of the same size within the file
        # system's timestamp granularity leaves the same stat behind, so a file
        # modified just before or while that build read it is read again to compare.
        self.trusted_before = 0
        self.rechecked = 0  # files read again this build only because of the above
        # What the index file holds: (mtime_ns, size, digest, plan key) by source,
        # and the parsed posts, still marshalled, with the delta's newer ones.
        self._stats: dict[str, tuple[Any, ...]] = {}
        self._blob = b""
        self._newer: dict[str, tuple[Any, ...]] = {}
        self._files: dict[str, FileEntry] | None = {}
        self._edited: dict[str, FileEntry] = {}  # read while the index stayed encoded
        self._token = ""  # names the base file the delta applies to
        self._delta: dict[str, tuple[Any, ...] | None] = {}
        self._indexed: set[str] = set()  # sources the index files hold
        self._bodies: dict[tuple[str, str], Rendered] = {}
        self._unsaved: set[tuple[str, str]] = set()
        self._kept: set[str] | None = None  # body file names to keep
        self._db: sqlite3.Connection | None = None

    def begin_reading(self) -> None:
        """Note that a build starts reading files now (see :attr:`trusted_before`)."""
        self.read_at = time.time_ns()
        self.rechecked = 0

    def end_reading(self) -> None:
        """The build that began reading at :attr:`read_at` is done: trust what it read."""
        self.trusted_before = self.read_at - _RACY_NS

    def records(self) -> Mapping[str, tuple[Any, ...]]:
        """Each file's (mtime_ns, size, digest, plan key) as last read, without decoding posts."""
        if self._files is None and not self._edited:
            return self._stats
        records = dict(self._stats) if self._files is None else {}
        files = self._files if self._files is not None else self._edited
        records.update((source, entry.record()) for source, entry in files.items())
        return records

    def sources(self) -> set[str]:
        """Every post file the cache knows."""
        return set(self._files if self._files is not None else self._stats)

    @property
    def files(self) -> dict[str, FileEntry]:
        """Every post file as last read, decoding the stored posts on first use."""
        if self._files is None:
            try:
                posts = marshal.loads(self._blob) if self._blob else {}
                posts.update(self._newer)
                files = {
                    source: entry_from_tuple(stat + posts[source])
                    for source, stat in self._stats.items()
                }
            except (EOFError, ValueError, TypeError, KeyError):
                # A corrupt index is never trusted: every post is read again and
                # every output made again, as in a cold build.
                files, self.feeds, self.memo = {}, {}, None
            files.update(self._edited)
            self._files, self._blob, self._newer, self._edited = files, b"", {}, {}
        return self._files

    @files.setter
    def files(self, entries: dict[str, FileEntry]) -> None:
        self._files = entries
        self._edited = {}

    def update(self, source: str, entry: FileEntry) -> None:
        """Record one file read again, without decoding every stored post."""
        if self._files is not None:
            self._files[source] = entry
        else:
            self._edited[source] = entry

    def _body_store(self) -> sqlite3.Connection | None:
        """The bodies database, opened on first use; None when the cache lives in memory."""
        if self._db is None and self.folder is not None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.folder / _BODIES, check_same_thread=False)
                # A cache: losing the last writes to a crash only means rendering again.
                db.execute("PRAGMA synchronous=OFF")
                db.execute("CREATE TABLE IF NOT EXISTS bodies (name TEXT PRIMARY KEY, data BLOB)")
                self._db = db
            except (OSError, sqlite3.Error):
                return None
        return self._db

    def get_body(self, key: tuple[str, str]) -> Rendered | None:
        """The rendered body stored under ``key``, from memory or from the bodies database."""
        body = self._bodies.get(key)
        if body is not None or not self.stored_bodies:
            return body
        db = self._body_store()
        if db is None:
            return None
        try:
            row = db.execute(
                "SELECT data FROM bodies WHERE name = ?", (_body_name(key),)
            ).fetchone()
            if row is None:
                return None
            html, summary, flag = marshal.loads(row[0])
        except (sqlite3.Error, EOFError, ValueError, TypeError):
            return None
        body = self._bodies[key] = Rendered(html, summary, flag)
        return body

    def close(self) -> None:
        """Close the bodies database (it opens again when next needed)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def closed(self) -> bool:
        """Whether the bodies database is closed (it is open only while a build uses it)."""
        return self._db is None

    def put_body(self, key: tuple[str, str], body: Rendered) -> None:
        self._bodies[key] = body
        self._unsaved.add(key)

    def keep_bodies(self, keys: set[tuple[str, str]]) -> None:
        """Forget every body not under one of ``keys`` (in memory now, on disk at save)."""
        self._bodies = {k: v for k, v in self._bodies.items() if k in keys}
        self._unsaved &= keys
        self._kept = {_body_name(k) for k in keys}

    @classmethod
    def load(cls, folder: Path, settings: str) -> BuildCache:
        """The cache in ``folder`` if it was made with the same ``settings``, else an empty one.

        Stored posts stay encoded until :attr:`files` is first used.
        """
        cache = cls(settings=settings, folder=folder)
        try:
            format_, stored_settings, token, read_at, stats, blob, feeds, memo = marshal.loads(
                (folder / _NAME).read_bytes()
            )
            if format_ != _FORMAT or stored_settings != settings:
                # Post URLs, dates and ids depend on the settings: start cold.
                return cache
            delta: dict[str, tuple[Any, ...] | None] = {}
            try:
                raw = (folder / _DELTA).read_bytes()
            except FileNotFoundError:
                raw = b""
            if raw:
                # A delta that cannot be read makes the whole cache untrustworthy
                # (its fingerprints may be the newest): the error below runs cold.
                d_format, d_settings, d_token, d_read_at, changes, d_feeds, d_memo = marshal.loads(
                    raw
                )
                # Another token means a newer base was written after this delta.
                if (d_format, d_settings, d_token) == (_FORMAT, settings, token):
                    delta, feeds, memo, read_at = dict(changes), d_feeds, d_memo, d_read_at
            newer = {}
            for source, values in delta.items():
                if values is None:
                    stats.pop(source, None)
                else:
                    stats[source] = values[:4]
                    newer[source] = values[4:]
            cache.memo = _memo_from_tuple(memo) if memo is not None else None
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            return cls(settings=settings, folder=folder)
        cache._stats, cache._blob, cache._newer = stats, blob, newer
        cache._files = None
        cache.feeds = dict(feeds)
        cache._token, cache._delta = token, delta
        cache._indexed = set(stats)
        cache.trusted_before = read_at - _RACY_NS
        return cache

    def _changes(
        self,
    ) -> tuple[dict[str, tuple[Any, ...] | None], list[tuple[FileEntry, tuple[Any, ...]]]]:
        """Entries changed since the base file was written (removals as None), and the
        entries to mark as saved once they are."""
        changes = dict(self._delta)
        marks = []
        files = self._files if self._files is not None else self._edited
        for source, entry in files.items():
            if entry.dirty or entry.saved is None:
                changes[source] = values = entry_to_tuple(entry)
                marks.append((entry, values))
        if self._files is not None:
            for source in self._indexed - self._files.keys():
                changes[source] = None
        return changes, marks

    def save(self) -> None:
        """Write the cache; a failure to save only costs the next build time."""
        encoded = self.encode()
        if encoded is not None:
            self.commit(encoded)

    def encode(self) -> Encoded | None:
        """What :meth:`commit` will write, worked out without touching the disk.

        CPU work only, so that a build can do it while its feeds are being
        written. None for a cache that lives in memory only.
        """
        if self.folder is None:
            return None
        changes, marks = self._changes()
        bodies = [(_body_name(key), _dump_body(self._bodies[key])) for key in self._unsaved]
        memo = _memo_to_tuple(self.memo) if self.memo is not None else None
        if self._token and len(changes) <= _MAX_DELTA:
            delta = (_FORMAT, self.settings, self._token, self.read_at, changes, self.feeds, memo)
            data = marshal.dumps(delta, _MARSHAL)
            return Encoded(b"", data, self._token, changes, bodies, marks)
        token = os.urandom(8).hex()
        stats, posts = {}, {}
        for source, entry in self.files.items():
            # Changed entries were just turned into tuples above: not twice.
            values = changes.get(source) or entry_to_tuple(entry)
            stats[source], posts[source] = values[:4], values[4:]
        blob = marshal.dumps(posts, _MARSHAL)
        index = (_FORMAT, self.settings, token, self.read_at, stats, blob, self.feeds, memo)
        return Encoded(marshal.dumps(index, _MARSHAL), b"", token, {}, bodies, marks)

    def commit(self, encoded: Encoded) -> None:
        """Write what :meth:`encode` made: new bodies, then the index or its delta.

        Nothing is fsynced: a torn file fails to load and is simply rebuilt,
        so durability would only cost time.
        """
        assert self.folder is not None, "encode() gives None for a memory-only cache"
        # Bodies go into one SQLite file: writing hundreds of small files one by
        # one cost a cold build a quarter of a second.
        db = self._body_store()
        with contextlib.suppress(sqlite3.Error):
            if db is not None:
                with db:
                    db.executemany(
                        "INSERT OR REPLACE INTO bodies (name, data) VALUES (?, ?)", encoded.bodies
                    )
                    if self._kept is not None:
                        stored = {name for (name,) in db.execute("SELECT name FROM bodies")}
                        db.executemany(
                            "DELETE FROM bodies WHERE name = ?",
                            [(name,) for name in stored - self._kept],
                        )
                self._unsaved.clear()
        self.close()
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            # Files are replaced atomically but not fsynced: after a power cut a
            # torn cache fails to load and the next build simply runs cold.
            if encoded.base:
                _replace(self.folder / _NAME, encoded.base)
                (self.folder / _DELTA).unlink(missing_ok=True)
            else:
                _replace(self.folder / _DELTA, encoded.delta)
            self._token, self._delta = encoded.token, encoded.changes
            self._indexed = self.sources()
            # Only now are these entries in the index: a failed write leaves them
            # marked as changed, so that the next save still writes them.
            for entry, values in encoded.marks:
                entry.saved, entry.dirty = values, False


class Encoded(NamedTuple):
    """A cache ready to be written (see :meth:`BuildCache.encode`)."""

    base: bytes  # a new base file, or b"" when only the delta is written
    delta: bytes
    token: str  # the base file's token once written
    changes: dict[str, tuple[Any, ...] | None]  # what the delta holds once written
    bodies: list[tuple[str, bytes]]  # rendered bodies to add, by name
    marks: list[tuple[FileEntry, tuple[Any, ...]]]  # entries to mark as saved once written


def _memo_to_tuple(memo: Memo) -> tuple[Any, ...]:
    return (
        memo.settings,
        memo.newest_published.isoformat() if memo.newest_published else None,
        memo.next_scheduled.isoformat() if memo.next_scheduled else None,
        tuple((s.kind, s.name, s.folder, s.title, s.sources) for s in memo.scopes),
        {source: _post_to_tuple(post) for source, post in memo.posts.items()},
        memo.scheduled,
        tuple((e.path, e.message, e.line, e.col, e.field) for e in memo.errors),
        memo.warnings,
        memo.published,
        memo.drafts,
    )


def _memo_from_tuple(values: tuple[Any, ...]) -> Memo:
    settings, newest, next_, scopes, posts, scheduled, errors, warnings, published, drafts = values
    return Memo(
        settings=settings,
        newest_published=datetime.fromisoformat(newest) if newest else None,
        next_scheduled=datetime.fromisoformat(next_) if next_ else None,
        scopes=tuple(ScopePlan(*scope) for scope in scopes),
        posts={source: _post_from_tuple(post) for source, post in posts.items()},
        scheduled=tuple(scheduled),
        errors=tuple(PostError(*error) for error in errors),
        warnings=tuple(warnings),
        published=published,
        drafts=drafts,
    )


def _dump_body(body: Rendered) -> bytes:
    return marshal.dumps((body.html, body.summary, body.had_illegal_chars))


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)

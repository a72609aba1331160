"""The build cache on disk: the marshalled index, its delta and the bodies database.

:class:`~publisher.build.cache.BuildCache` keeps what a build may reuse in
memory; this module is how that is written to ``paths.cache`` and read back:

* ``build.marshal``, the base index: each post file's stat and plan key, its
  parsed post in one marshalled blob, each output's fingerprint, the last plan;
* ``build.delta.marshal``, the entries changed since that base was written,
  tied to it by a token, so that a warm build after one edit writes a few
  kilobytes instead of the whole index;
* ``bodies.sqlite``, the rendered bodies, each read on demand.

Everything is plain tuples of strings and numbers in :mod:`marshal` format:
loading ten thousand posts that way takes a fraction of what unpickling the
objects takes, and a cache file cannot run code when it is read.

What it must never do: trust a file it cannot decode, or one written by
another format or with other settings (the caller then runs cold); fsync
(a torn file fails to load and is simply rebuilt, so durability would only
cost time); know when a stat may be trusted or what a build does with an
entry (that is :mod:`publisher.build.cache`'s business).
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from publisher import __version__
from publisher.build.plan import Memo, ScopePlan, plan_key
from publisher.errors import PostError
from publisher.site.markup import Rendered
from publisher.site.posts import Enclosure, Post

__all__ = [
    "MAX_DELTA",
    "Encoded",
    "FileEntry",
    "Index",
    "body_name",
    "decode_files",
    "dump_body",
    "encode_base",
    "encode_delta",
    "entry_from_tuple",
    "entry_to_tuple",
    "memo_to_tuple",
    "open_bodies",
    "read_body",
    "read_index",
    "store_bodies",
    "write_index",
]

# 8: a body that is not UTF-8 rejects its post; 9: posts' image, enclosure and
# reading time, and bodies' first image and text size; 10: posts' lead, scopes'
# history; 11: histories as positions in the site's
_FORMAT = (13, __version__)
_NAME = "build.marshal"
_DELTA = "build.delta.marshal"
_BODIES = "bodies.sqlite"
# Version 2 of the marshal format shares no objects: writing freshly parsed posts
# takes half the time of the default, whose sharing table sees every string that
# a live post also holds, and reading is no slower.
_MARSHAL = 2
#: Past this many changed entries the base index is rewritten and the delta dropped.
MAX_DELTA = 500
_DATE = Post._fields.index("date")
_UPDATED = Post._fields.index("updated")
_ENCLOSURE = Post._fields.index("enclosure")


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


# --- tuples ---------------------------------------------------------------------------------


def _post_to_tuple(post: Post) -> tuple[Any, ...]:
    values: list[Any] = list(post)
    values[_DATE] = post.date.isoformat()
    values[_UPDATED] = post.updated.isoformat() if post.updated is not None else None
    if post.enclosure is not None:
        values[_ENCLOSURE] = tuple(values[_ENCLOSURE])  # marshal takes no tuple subclass
    return tuple(values)


def _post_from_tuple(values: tuple[Any, ...]) -> Post:
    fields = list(values)
    fields[_DATE] = datetime.fromisoformat(fields[_DATE])
    if fields[_UPDATED] is not None:
        fields[_UPDATED] = datetime.fromisoformat(fields[_UPDATED])
    if fields[_ENCLOSURE] is not None:
        fields[_ENCLOSURE] = Enclosure._make(fields[_ENCLOSURE])
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


def memo_to_tuple(memo: Memo) -> tuple[Any, ...]:
    """The last plan as plain values, for the index file."""
    return (
        memo.settings,
        memo.newest_published.isoformat() if memo.newest_published else None,
        memo.next_scheduled.isoformat() if memo.next_scheduled else None,
        _scopes_to_tuple(memo.scopes),
        {source: _post_to_tuple(post) for source, post in memo.posts.items()},
        memo.scheduled,
        tuple((e.path, e.message, e.line, e.col, e.field) for e in memo.errors),
        memo.warnings,
        memo.published,
        memo.drafts,
    )


def _scopes_to_tuple(scopes: tuple[ScopePlan, ...]) -> tuple[Any, ...]:
    """The plan's scopes; each history after the first as positions in the first one.

    The first scope (the site's) holds every published post, and every other
    history is a part of it: as positions, 10,000 posts in 20 categories take
    150 KB of the index instead of 1.4 MB, read and written by every warm build.
    """
    if not scopes:
        return ()
    global _last_scopes
    if _last_scopes[0] is scopes:
        return _last_scopes[1]  # a warm build that kept the plan saves it unchanged
    first = scopes[0].history
    position = {source: i for i, source in enumerate(first)}
    encoded = []
    for index, s in enumerate(scopes):
        history: tuple[Any, ...] = s.history
        if index > 0:
            history = tuple(position[source] for source in s.history)
        encoded.append((s.kind, s.name, s.folder, s.title, s.sources, history))
    _last_scopes = (scopes, tuple(encoded))
    return _last_scopes[1]


# The last scopes encoded or decoded, with their encoding: a plan kept by a warm
# build (the usual one) is saved again as it was read, and turning its histories
# into positions took a few milliseconds of every such build.
_last_scopes: tuple[tuple[ScopePlan, ...] | None, tuple[Any, ...]] = (None, ())


def _scopes_from_tuple(values: tuple[Any, ...]) -> tuple[ScopePlan, ...]:
    scopes = []
    first: tuple[str, ...] = ()
    for index, (kind, name, folder, title, sources, history) in enumerate(values):
        if index == 0:
            first = tuple(history)
        else:
            history = tuple(first[i] for i in history)
        scopes.append(ScopePlan(kind, name, folder, title, tuple(sources), tuple(history)))
    global _last_scopes
    decoded = tuple(scopes)
    _last_scopes = (decoded, values)
    return decoded


def _memo_from_tuple(values: tuple[Any, ...]) -> Memo:
    settings, newest, next_, scopes, posts, scheduled, errors, warnings, published, drafts = values
    return Memo(
        settings=settings,
        newest_published=datetime.fromisoformat(newest) if newest else None,
        next_scheduled=datetime.fromisoformat(next_) if next_ else None,
        scopes=_scopes_from_tuple(scopes),
        posts={source: _post_from_tuple(post) for source, post in posts.items()},
        scheduled=tuple(scheduled),
        errors=tuple(PostError(*error) for error in errors),
        warnings=tuple(warnings),
        published=published,
        drafts=drafts,
    )


# --- the index ------------------------------------------------------------------------------


class Index(NamedTuple):
    """What the index files hold, with the delta applied; posts still marshalled."""

    token: str  # names the base file the delta applies to
    read_at: int  # when the build that saved it began reading files (time.time_ns())
    stats: dict[str, tuple[Any, ...]]  # (mtime_ns, size, digest, plan key) by source
    blob: bytes  # the base file's parsed posts, marshalled
    newer: dict[str, tuple[Any, ...]]  # the delta's parsed posts, which replace the blob's
    feeds: dict[str, str]  # output path -> input fingerprint
    memo: Memo | None
    delta: dict[str, tuple[Any, ...] | None]  # what the delta file holds (removals as None)


def read_index(folder: Path, settings: str) -> Index | None:
    """The index in ``folder`` if it was made with this format and ``settings``, else None."""
    try:
        format_, stored_settings, token, read_at, stats, blob, feeds, memo = marshal.loads(
            (folder / _NAME).read_bytes()
        )
        if format_ != _FORMAT or stored_settings != settings:
            # Post URLs, dates and ids depend on the settings: start cold.
            return None
        # The base holds its feeds and plan marshalled once more (see encode_base):
        # a delta, when there is one, replaces both, and then they are not decoded.
        delta: dict[str, tuple[Any, ...] | None] = {}
        try:
            raw = (folder / _DELTA).read_bytes()
        except FileNotFoundError:
            raw = b""
        if raw:
            # A delta that cannot be read makes the whole cache untrustworthy
            # (its fingerprints may be the newest): the error below runs cold.
            d_format, d_settings, d_token, d_read_at, changes, d_feeds, d_memo = marshal.loads(raw)
            # Another token means a newer base was written after this delta.
            if (d_format, d_settings, d_token) == (_FORMAT, settings, token):
                delta, feeds, memo, read_at = dict(changes), d_feeds, d_memo, d_read_at
        if isinstance(feeds, bytes):  # the base's own
            feeds, memo = marshal.loads(feeds), marshal.loads(memo)
        newer = {}
        for source, values in delta.items():
            if values is None:
                stats.pop(source, None)
            else:
                stats[source] = values[:4]
                newer[source] = values[4:]
        plan = _memo_from_tuple(memo) if memo is not None else None
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError):
        return None
    return Index(token, read_at, stats, blob, newer, dict(feeds), plan, delta)


def decode_files(
    stats: Mapping[str, tuple[Any, ...]], blob: bytes, newer: Mapping[str, tuple[Any, ...]]
) -> dict[str, FileEntry] | None:
    """Every post file of an :class:`Index`, its posts decoded; None if the blob is corrupt."""
    try:
        posts = marshal.loads(blob) if blob else {}
        posts.update(newer)
        return {source: entry_from_tuple(stat + posts[source]) for source, stat in stats.items()}
    except (EOFError, ValueError, TypeError, KeyError):
        return None


class Encoded(NamedTuple):
    """A cache ready to be written (see :meth:`BuildCache.encode`)."""

    base: bytes  # a new base file, or b"" when only the delta is written
    delta: bytes
    token: str  # the base file's token once written
    changes: dict[str, tuple[Any, ...] | None]  # what the delta holds once written
    bodies: list[tuple[str, bytes]]  # rendered bodies to add, by name
    marks: list[tuple[FileEntry, tuple[Any, ...]]]  # entries to mark as saved once written
    # Feed entries to add, by their body's name: made as they are written, since
    # together they are larger than the bodies (a site's whole history, per format).
    entries: Iterable[tuple[str, bytes]] = ()


def encode_delta(
    settings: str,
    token: str,
    read_at: int,
    changes: dict[str, tuple[Any, ...] | None],
    feeds: dict[str, str],
    memo: tuple[Any, ...] | None,
) -> bytes:
    """The delta file: ``changes`` since the base file named by ``token``, and the rest anew."""
    return marshal.dumps((_FORMAT, settings, token, read_at, changes, feeds, memo), _MARSHAL)


def encode_base(
    settings: str,
    read_at: int,
    files: Mapping[str, FileEntry],
    changes: Mapping[str, tuple[Any, ...] | None],
    feeds: dict[str, str],
    memo: tuple[Any, ...] | None,
) -> tuple[str, bytes]:
    """A new base file holding every one of ``files``, and its new token."""
    token = os.urandom(8).hex()
    stats, posts = {}, {}
    for source, entry in files.items():
        # Changed entries were just turned into tuples by the caller: not twice.
        values = changes.get(source) or entry_to_tuple(entry)
        stats[source], posts[source] = values[:4], values[4:]
    blob = marshal.dumps(posts, _MARSHAL)
    # The feeds' fingerprints and the plan are marshalled apart: every warm build's
    # delta holds them anew, and a site with archives has 1,500 fingerprints and
    # each scope's whole history, which need not be decoded twice.
    index = (
        _FORMAT,
        settings,
        token,
        read_at,
        stats,
        blob,
        marshal.dumps(feeds, _MARSHAL),
        marshal.dumps(memo, _MARSHAL),
    )
    return token, marshal.dumps(index, _MARSHAL)


def write_index(folder: Path, encoded: Encoded) -> bool:
    """Write the base file (dropping the delta) or the delta; False if that failed."""
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        # Files are replaced atomically but not fsynced: after a power cut a
        # torn cache fails to load and the next build simply runs cold.
        if encoded.base:
            _replace(folder / _NAME, encoded.base)
            (folder / _DELTA).unlink(missing_ok=True)
        else:
            _replace(folder / _DELTA, encoded.delta)
        return True
    return False


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --- rendered bodies ------------------------------------------------------------------------


def body_name(key: tuple[str, str]) -> str:
    """The name a rendered body is stored under in the bodies database.

    The format is part of the name: the bodies database outlives an index of
    another format (which only makes the build cold), and a body stored by
    another format must not be found, let alone misread.
    """
    text = "\0".join((repr(_FORMAT), *key))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def dump_body(body: Rendered) -> bytes:
    """A rendered body as :func:`store_bodies` stores it."""
    return marshal.dumps(
        (
            body.html,
            body.summary,
            body.had_illegal_chars,
            body.image,
            body.words,
            body.cjk_chars,
        )
    )


def open_bodies(folder: Path) -> sqlite3.Connection | None:
    """The bodies database in ``folder``, made if missing; None if it cannot be opened."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(folder / _BODIES, check_same_thread=False)
        # A cache: losing the last writes to a crash only means rendering again.
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE IF NOT EXISTS bodies (name TEXT PRIMARY KEY, data BLOB)")
        # A post's feed entries (see publisher.feeds.entries), under its body's name.
        db.execute("CREATE TABLE IF NOT EXISTS entries (name TEXT PRIMARY KEY, data BLOB)")
    except (OSError, sqlite3.Error):
        return None
    return db


def read_body(db: sqlite3.Connection, key: tuple[str, str]) -> Rendered | None:
    """The body stored under ``key``; None if there is none or it cannot be read."""
    try:
        row = db.execute("SELECT data FROM bodies WHERE name = ?", (body_name(key),)).fetchone()
        if row is None:
            return None
        # A tuple of another length (another format) is a miss, not a misread body.
        html, summary, flag, image, words, cjk_chars = marshal.loads(row[0])
    except (sqlite3.Error, EOFError, ValueError, TypeError):
        return None
    return Rendered(html, summary, flag, image, words, cjk_chars)


def dump_entries(settings: str, entries: Mapping[str, bytes]) -> bytes:
    """A post's entries by format, made under ``settings``, as :func:`store_bodies` stores them."""
    return marshal.dumps((settings, tuple(sorted(entries.items()))))


def read_entries(db: sqlite3.Connection, key: tuple[str, str], settings: str) -> dict[str, bytes]:
    """The entries stored under ``key`` by format, if made under ``settings``; else none."""
    try:
        row = db.execute("SELECT data FROM entries WHERE name = ?", (body_name(key),)).fetchone()
        if row is None:
            return {}
        made_under, entries = marshal.loads(row[0])
    except (sqlite3.Error, EOFError, ValueError, TypeError):
        return {}
    return dict(entries) if made_under == settings else {}


def store_bodies(
    db: sqlite3.Connection,
    bodies: Iterable[tuple[str, bytes]],
    kept: set[str] | None,
    entries: Iterable[tuple[str, bytes]] = (),
) -> bool:
    """Add ``bodies`` and ``entries`` (name, data) and, given ``kept``, drop every other;
    False on failure."""
    # Bodies go into one SQLite file: writing hundreds of small files one by
    # one cost a cold build a quarter of a second.
    with contextlib.suppress(sqlite3.Error):
        with db:
            db.executemany("INSERT OR REPLACE INTO bodies (name, data) VALUES (?, ?)", bodies)
            db.executemany("INSERT OR REPLACE INTO entries (name, data) VALUES (?, ?)", entries)
            if kept is not None:
                for table in ("bodies", "entries"):
                    stored = {name for (name,) in db.execute(f"SELECT name FROM {table}")}
                    db.executemany(
                        f"DELETE FROM {table} WHERE name = ?",
                        [(name,) for name in stored - kept],
                    )
        return True
    return False

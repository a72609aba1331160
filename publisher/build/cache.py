"""The build cache: what earlier builds learned, so a warm build does little.

Four things are kept, each keyed so that a stale entry can never be used:
parsed posts by file stat and content hash, rendered bodies by content hash
and URL, each output file's input fingerprint, and the last build's plan
(:mod:`publisher.build.plan`). A stat is trusted only for a file last modified
well before the build that recorded it, as git does with its index. A
corrupt or foreign cache is ignored, never trusted; the build then runs cold.

This is the in-memory side, the API a build and a reader use; what the files
in ``paths.cache`` hold and how they are written is :mod:`.cachefile`. What it
must never do: hand out an entry, a body or a fingerprint that a cold build
would not make the same, decode every stored post when a build needs only a
few, or let a failure to save stop a build (saving only spares later work).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from publisher.build.cachefile import (
    MAX_DELTA,
    Encoded,
    FileEntry,
    body_name,
    decode_files,
    dump_body,
    dump_entries,
    encode_base,
    encode_delta,
    entry_from_tuple,
    entry_to_tuple,
    memo_to_tuple,
    open_bodies,
    read_body,
    read_entries,
    read_index,
    store_bodies,
    write_index,
)
from publisher.build.plan import Memo
from publisher.site.markup import Rendered

__all__ = ["BuildCache", "Encoded", "FileEntry", "entry_from_tuple", "entry_to_tuple"]

# More than the coarsest timestamp granularity of common file systems (FAT: 2 s).
_RACY_NS = 2_000_000_000


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
        # Each post's feed entries by format, under its body's key, and what they
        # were made under (publisher.feeds.entries.entry_settings).
        self._entries: dict[tuple[str, str], tuple[str, dict[str, bytes]]] = {}
        self._unsaved_entries: set[tuple[str, str]] = set()
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
            files = decode_files(self._stats, self._blob, self._newer)
            if files is None:
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
            self._db = open_bodies(self.folder)
        return self._db

    def get_body(self, key: tuple[str, str]) -> Rendered | None:
        """The rendered body stored under ``key``, from memory or from the bodies database."""
        body = self._bodies.get(key)
        if body is not None or not self.stored_bodies:
            return body
        db = self._body_store()
        if db is None:
            return None
        body = read_body(db, key)
        if body is not None:
            self._bodies[key] = body
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

    def get_entries(self, key: tuple[str, str], settings: str) -> dict[str, bytes]:
        """The feed entries by format stored under a body's ``key``, if made under
        ``settings``: every format, some, or none."""
        held = self._entries.get(key)
        if held is not None:
            return dict(held[1]) if held[0] == settings else {}
        db = self._body_store() if self.stored_bodies else None
        if db is None:
            return {}
        entries = read_entries(db, key, settings)
        if entries:
            self._entries[key] = (settings, entries)
        return dict(entries)

    def put_entries(self, key: tuple[str, str], settings: str, entries: dict[str, bytes]) -> None:
        """Keep ``entries`` (by format) under a body's ``key``, with those already there."""
        held = self._entries.get(key)
        merged = {**held[1], **entries} if held is not None and held[0] == settings else entries
        self._entries[key] = (settings, merged)
        self._unsaved_entries.add(key)

    def keep_bodies(self, keys: set[tuple[str, str]]) -> None:
        """Forget every body and entry not under one of ``keys`` (in memory now, on disk
        at save)."""
        self._bodies = {k: v for k, v in self._bodies.items() if k in keys}
        self._entries = {k: v for k, v in self._entries.items() if k in keys}
        self._unsaved &= keys
        self._unsaved_entries &= keys
        self._kept = {body_name(k) for k in keys}

    @classmethod
    def load(cls, folder: Path, settings: str) -> BuildCache:
        """The cache in ``folder`` if it was made with the same ``settings``, else an empty one.

        Stored posts stay encoded until :attr:`files` is first used.
        """
        cache = cls(settings=settings, folder=folder)
        index = read_index(folder, settings)
        if index is None:
            return cache
        cache._stats, cache._blob, cache._newer = index.stats, index.blob, index.newer
        cache._files = None
        cache.feeds, cache.memo = index.feeds, index.memo
        cache._token, cache._delta = index.token, index.delta
        cache._indexed = set(index.stats)
        cache.trusted_before = index.read_at - _RACY_NS
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
        bodies = [(body_name(key), dump_body(self._bodies[key])) for key in self._unsaved]
        held, unsaved = self._entries, list(self._unsaved_entries)
        entries = ((body_name(key), dump_entries(*held[key])) for key in unsaved)
        memo = memo_to_tuple(self.memo) if self.memo is not None else None
        if self._token and len(changes) <= MAX_DELTA:
            data = encode_delta(self.settings, self._token, self.read_at, changes, self.feeds, memo)
            return Encoded(b"", data, self._token, changes, bodies, marks, entries)
        # Decodes every stored post first (a corrupt index then forgets the feeds).
        files = self.files
        token, base = encode_base(self.settings, self.read_at, files, changes, self.feeds, memo)
        return Encoded(base, b"", token, {}, bodies, marks, entries)

    def commit(self, encoded: Encoded) -> None:
        """Write what :meth:`encode` made: new bodies, then the index or its delta.

        Nothing is fsynced: a torn file fails to load and is simply rebuilt,
        so durability would only cost time.
        """
        assert self.folder is not None, "encode() gives None for a memory-only cache"
        db = self._body_store()
        if db is not None and store_bodies(db, encoded.bodies, self._kept, encoded.entries):
            self._unsaved.clear()
            self._unsaved_entries.clear()
        self.close()
        if write_index(self.folder, encoded):
            self._token, self._delta = encoded.token, encoded.changes
            self._indexed = self.sources()
            # Only now are these entries in the index: a failed write leaves them
            # marked as changed, so that the next save still writes them.
            for entry, values in encoded.marks:
                entry.saved, entry.dirty = values, False

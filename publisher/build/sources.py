"""Finding and reading the post files of a site, reusing the build cache.

This is the I/O edge in front of :mod:`publisher.site.posts`: it walks
``paths.posts``, skips editor leftovers, refuses oversized files before
reading them, and parses only files whose stat and content changed.

It never writes a file: the cache is updated in memory, and the write step saves it.
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from publisher.build.cache import BuildCache
from publisher.build.cachefile import FileEntry, entry_from_tuple, entry_to_tuple
from publisher.build.workers import map_chunks, worker_count
from publisher.config import Config
from publisher.errors import PostError
from publisher.site.posts import MAX_POST_BYTES, Post, content_digest, is_post_file, parse_post

__all__ = ["ReadResult", "find_post_files", "read_edits", "read_posts"]


@dataclass
class ReadResult:
    """Every post file's outcome: parsed posts, rejected files and warnings."""

    posts: list[Post] = field(default_factory=list)
    errors: list[PostError] = field(default_factory=list)
    stale: list[PostError] = field(default_factory=list)  # broken now, last good version kept
    warnings: list[str] = field(default_factory=list)
    parsed: int = 0  # files actually read and parsed (the rest came from the cache)


def find_post_files(folder: Path, *, stat: bool = True) -> list[tuple[str, os.stat_result | None]]:
    """Every post file under ``folder`` (subfolders included) with its stat, sorted.

    Names are relative to ``folder`` with forward slashes. Hidden folders and
    editor leftovers (``*~``, ``.#*``, ``*.swp``, dotfiles) are skipped. With
    ``stat=False`` the stat is None: a build with nothing cached reads every
    file anyway, and takes the stat of the open file then, in its workers.
    """
    found: list[tuple[str, os.stat_result | None]] = []
    stack = [("", str(folder))]
    while stack:
        prefix, path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((f"{prefix}{name}/", entry.path))
            elif is_post_file(name) and entry.is_file():
                try:
                    found.append((prefix + name, entry.stat() if stat else None))
                except OSError:
                    continue
    found.sort(key=lambda item: item[0])
    return found


def _label(config: Config) -> str:
    """How sources are named: the posts folder relative to the site, with a slash."""
    folder, root = config.paths.posts, config.paths.root
    try:
        return folder.relative_to(root).as_posix() + "/"
    except ValueError:
        return folder.as_posix() + "/"


def read_edits(
    config: Config, cache: BuildCache, found: list[tuple[str, os.stat_result | None]], limit: int
) -> dict[str, tuple[str, FileEntry]] | None:
    """Read only the files changed since the cache was saved, without decoding the others.

    Returns each changed file's plan key as the cache knew it and its entry now,
    or None when this is not enough: a file was added or removed, or more than
    ``limit`` files changed. The cache is not updated.
    """
    label = _label(config)
    records = cache.records()
    if len(found) != len(records):
        return None
    todo: list[tuple[str, os.stat_result, str]] = []
    folder = os.fspath(config.paths.posts)
    for name, st in found:
        record = records.get(label + name)
        if record is None or st is None:
            return None
        if _changed(cache, folder, name, st, record):
            if len(todo) == limit:
                return None
            todo.append((name, st, record[3]))
    # A file read here has no old entry: even a touched file is parsed again,
    # which costs less than decoding every stored post to find its old one.
    return {
        label + name: (key, _read_one(config, f"{folder}/{name}", label + name, label, st, None))
        for name, st, key in todo
    }


def read_posts(
    config: Config,
    cache: BuildCache,
    keep_last_good: bool = False,
    parallel: bool = False,
    found: list[tuple[str, os.stat_result | None]] | None = None,
) -> ReadResult:
    """Read every post of the site, updating ``cache`` in place.

    With ``keep_last_good`` (the watcher's mode), a post that an edit broke is
    still served in its last good version and its error is reported as stale.
    With ``parallel``, many changed files are parsed in forked worker processes.
    ``found`` is :func:`find_post_files`' answer when the caller already has it.
    """
    folder = config.paths.posts
    path = os.fspath(folder)
    label = _label(config)
    result = ReadResult()
    entries: dict[str, FileEntry] = {}
    todo: list[tuple[str, os.stat_result | None, FileEntry | None]] = []
    known = cache.files
    for name, st in find_post_files(folder) if found is None else found:
        entry = known.get(label + name)
        if entry is None or st is None or _changed(cache, path, name, st, entry.record()):
            todo.append((name, st, entry))
        else:
            entries[label + name] = entry
    workers = worker_count(len(todo)) if parallel else 1
    read = map_chunks(
        partial(_read_chunk, config, label),
        todo,
        workers,
        send=_send_entries,
        receive=_receive_entries,
    )
    for name, entry in read:
        entries[label + name] = entry
    result.parsed = len(todo)

    for source in sorted(entries):
        entry = entries[source]
        outcome = entry.result
        if isinstance(outcome, Post):
            result.posts.append(outcome)
            result.warnings.extend(outcome.warnings)
        elif keep_last_good and entry.last_good is not None:
            result.posts.append(entry.last_good)
            result.stale.append(outcome)
        else:
            result.errors.append(outcome)
    cache.files = entries
    return result


def _changed(
    cache: BuildCache, folder: str, name: str, st: os.stat_result, known: tuple[Any, ...]
) -> bool:
    """Whether a file differs from ``known`` = (mtime_ns, size, digest, ...) as the cache has it.

    Another stat means changed. The same stat is trusted only if it is older
    than the cache's ``trusted_before``; a more recent one is checked against
    the file's bytes.
    """
    mtime_ns: int = known[0]
    size: int = known[1]
    digest: str = known[2]
    if mtime_ns != st.st_mtime_ns or size != st.st_size:
        return True
    if mtime_ns < cache.trusted_before:
        return False
    cache.rechecked += 1
    try:
        fd = os.open(f"{folder}/{name}", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            return content_digest(_read_fd(fd, size)) != digest
        finally:
            os.close(fd)
    except OSError:
        return True


def _read_chunk(
    config: Config,
    label: str,
    items: Sequence[tuple[str, os.stat_result | None, FileEntry | None]],
) -> list[tuple[str, FileEntry]]:
    """Read some files: (name, entry) for each."""
    folder = os.fspath(config.paths.posts)
    return [
        (name, _read_one(config, f"{folder}/{name}", label + name, label, st, old))
        for name, st, old in items
    ]


def _send_entries(read: list[tuple[str, FileEntry]]) -> bytes:
    # Plain tuples in one marshal blob cross from a worker process ten times
    # faster than the same entries pickled.
    return marshal.dumps([(name, entry_to_tuple(entry)) for name, entry in read], 2)


def _receive_entries(sent: bytes) -> list[tuple[str, FileEntry]]:
    return [(name, entry_from_tuple(values, dirty=True)) for name, values in marshal.loads(sent)]


def _read_fd(fd: int, expected: int) -> bytes:
    """An open file's bytes, at most MAX_POST_BYTES + 1 of them (os.read: no file object)."""
    # Ask for what the stat promised, plus a margin for a file being written.
    chunks, total, size = [], 0, expected + 4096
    while total <= MAX_POST_BYTES:
        chunk = os.read(fd, min(size, MAX_POST_BYTES + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_one(
    config: Config,
    path: str,
    source: str,
    label: str,
    st: os.stat_result | None,
    old: FileEntry | None,
) -> FileEntry:
    last_good = old.last_good if old else None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = st or os.fstat(fd)
            if st.st_size > MAX_POST_BYTES:
                message = f"file is larger than {MAX_POST_BYTES // 2**20} MB"
                error = PostError(source, message, 1, 1, "size")
                return FileEntry(st.st_mtime_ns, st.st_size, "", error, last_good)
            data = _read_fd(fd, st.st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        error = PostError(source, f"cannot be read: {exc.strerror}", 1, 1, "file")
        return FileEntry(st.st_mtime_ns if st else 0, st.st_size if st else 0, "", error, last_good)
    digest = content_digest(data)
    if old is not None and old.digest == digest:
        # Same bytes under a new stat (a touch, a checkout): nothing to parse.
        return FileEntry(st.st_mtime_ns, st.st_size, digest, old.result, last_good)
    try:
        post: Post | PostError = parse_post(
            source,
            data,
            tz=config.site.timezone,
            permalink=config.permalink,
            site_url=config.site.url,
            stem=source.rsplit("/", 1)[-1].rsplit(".", 1)[0],
            digest=digest,
            id_key=source[len(label) :].rsplit(".", 1)[0],
        )
    except PostError as exc:
        post = exc
    good = post if isinstance(post, Post) else last_good
    return FileEntry(st.st_mtime_ns, st.st_size, digest, post, good)

"""Writing files under the output folder, safely and atomically.

A feed reader may poll while a build runs, so every file is written to a
temporary file in the same folder, flushed to disk and renamed over the old
one: a reader sees the old feed or the new one, never half of either. No path
built from a slug, category or permalink may leave the output folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar, cast

from publisher.errors import OutputError

__all__ = [
    "OutputWriter",
    "Staged",
    "atomic_write",
    "atomic_write_many",
    "commit_files",
    "discard_files",
    "safe_join",
    "stage_file",
]

T = TypeVar("T")


def safe_join(root: Path, relative: str, *, resolved_root: Path | None = None) -> Path:
    """Return ``root / relative``, refusing anything that would land outside ``root``.

    ``resolved_root`` is ``root.resolve()`` when the caller already has it.
    """
    parts = relative.replace("\\", "/").split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise OutputError(
            f"refusing to write {relative!r}: not a plain path inside the output folder"
        )
    if any("\x00" in p for p in parts):
        raise OutputError(f"refusing to write {relative!r}: NUL in path")
    target = root.joinpath(*parts)
    # A symlink inside the output folder could still point elsewhere.
    if not target.resolve().is_relative_to(resolved_root or root.resolve()):
        raise OutputError(f"refusing to write {relative!r}: it resolves outside {root}")
    return target


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that no reader ever sees a partial file.

    Written to a temporary file in the same folder, flushed to disk, renamed
    over ``path``, and the folder flushed so that the rename survives a crash.
    """
    atomic_write_many([(path, data)], mode)


def atomic_write_many(files: Sequence[tuple[Path, bytes]], mode: int = 0o644) -> None:
    """Replace each path with its data as :func:`atomic_write` does, flushing them together.

    Every file goes to its temporary file first (:func:`stage_file`) and all
    are flushed to disk at once, which lets the file system commit them
    together; then each is renamed into place (:func:`commit_files`).
    """
    staged: list[tuple[str, Path]] = []
    try:
        made: set[Path] = set()
        for path, data in files:
            staged.append((stage_file(path, data, mode, made=made), path))
    except BaseException:
        discard_files(tmp for tmp, _ in staged)
        raise
    commit_files(staged)


def stage_file(
    path: Path, data: bytes | Sequence[bytes], mode: int = 0o644, *, made: set[Path] | None = None
) -> str:
    """Write ``data`` (bytes, or their parts) to a new temporary file beside ``path``;
    returns the temporary's path.

    Nothing is visible at ``path`` until :func:`commit_files` renames it there;
    :func:`discard_files` removes it instead. ``made`` holds folders known to
    exist, to spare a ``mkdir`` per file.
    """
    folder = path.parent
    if made is None or folder not in made:
        folder.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.add(folder)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(fd, "wb", closefd=False) as handle:
            if isinstance(data, bytes):
                handle.write(data)
            else:
                handle.writelines(data)
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def commit_files(staged: Sequence[tuple[str, Path]]) -> None:
    """Flush staged temporary files to disk together, rename each over its path, sync folders.

    A cold build's 65 feeds took 42 ms this way here, against 62 ms one by one.
    Past :data:`SYNCFS_FILES` files (a cold build with archive pages) one
    ``syncfs`` of the file system does the flushing, where Linux has it:
    1,452 archive pages took 0.8 s to fsync one by one here and 0.05 s with one
    ``syncfs``. If anything fails, the temporary files not yet renamed are removed.
    """
    renamed = 0
    whole = False  # flushed with syncfs
    try:
        if len(staged) >= SYNCFS_FILES:
            with contextlib.ExitStack() as stack:
                fds = [stack.enter_context(_opened(f)) for f in _by_device(staged)]
                whole = _syncfs_each(fds)
        if not whole:
            _each(_sync, [tmp for tmp, _ in staged])
        for tmp, path in staged:
            os.replace(tmp, path)
            renamed += 1
    except BaseException:
        discard_files(tmp for tmp, _ in staged[renamed:])
        raise
    # The renames themselves must survive a crash too.
    if whole:
        with contextlib.ExitStack() as stack:
            fds = [stack.enter_context(_opened(folder)) for folder in _by_device(staged)]
            _syncfs_each(fds)
    else:
        _each(_sync, sorted({path.parent for _, path in staged}))


def discard_files(temps: Iterable[str]) -> None:
    """Remove staged temporary files (those already gone are passed over)."""
    for tmp in temps:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


#: From this many files on, one syncfs per file system is cheaper than an fsync per file.
SYNCFS_FILES = 200


def _syncfs_each(fds: Sequence[int]) -> bool:
    """Flush the file system of each of ``fds`` (once per device); False where impossible."""
    syncfs = _syncfs()
    if syncfs is None:
        return False
    seen: set[int] = set()
    for fd in fds:
        device = os.fstat(fd).st_dev
        if device in seen:
            continue
        seen.add(device)
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"syncfs: {os.strerror(error)}")
    return True


def _syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2), which the os module does not offer; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return cast(Callable[[int], int], ctypes.CDLL(None, use_errno=True).syncfs)
    except (OSError, AttributeError):
        return None


def _by_device(staged: Sequence[tuple[str, Path]]) -> list[Path]:
    """One written folder per file system."""
    folders: dict[int, Path] = {}
    seen: set[Path] = set()
    for _, path in staged:
        if path.parent not in seen:
            seen.add(path.parent)
            folders.setdefault(path.parent.stat().st_dev, path.parent)
    return list(folders.values())


@contextlib.contextmanager
def _opened(folder: Path) -> Iterator[int]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def _sync(path: str | Path) -> None:
    """fsync a file or a folder by name: it flushes the data whichever descriptor wrote it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _each(func: Callable[[T], object], items: Sequence[T]) -> None:
    """``func`` on every item; a few threads at once when there are many (fsync waits)."""
    if len(items) < 8:
        for item in items:
            func(item)
        return
    from concurrent.futures import ThreadPoolExecutor  # only for many files: a cold build

    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in pool.map(func, items):
            pass


class Staged(NamedTuple):
    """A file made ready to write: its temporary file, renamed into place by ``write_all``.

    Made by :meth:`OutputWriter.stage`, possibly in a worker process (a cold
    build's workers stage the archive pages they make, rather than send their
    bytes back). ``temp`` is "" when the file on disk already holds the bytes.
    """

    relative: str
    temp: str
    existed: bool


class OutputWriter:
    """Writes a build's files under one root; each path may be claimed once per build."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.claimed: dict[str, str] = {}
        self.written: list[str] = []
        self.created: list[str] = []  # those of written that were not there before
        self.unchanged: list[str] = []
        self._resolved_root = root.resolve()
        self._keys: dict[str, str] = {}  # relative path -> its target as text, once claimed
        self._targets: dict[str, Path] = {}  # relative path -> target, once asked for
        # Folder (relative) -> its checked path as text, and the names of the files
        # and links in it: a build with archive pages claims some 1,500 files in 60
        # folders, and resolving, stating and making a Path of each cost more than
        # the rest of a no-change build.
        self._folders: dict[str, tuple[str, dict[str, bool]]] = {}
        self._links: dict[str, set[str]] = {}  # folder (relative) -> the links in it

    def claim(self, relative: str, owner: str) -> None:
        """Reserve ``relative`` for ``owner``; a claim by another owner on one path is an error.

        ``owner`` says what the file is for, so that two outputs aimed at the
        same path are reported by name instead of one silently replacing the other.
        The same owner may claim its path again (a build claims before it writes).
        """
        key = self._keys.get(relative)
        if key is None:
            key = self._safe_target(relative)
        if self.claimed.setdefault(key, owner) != owner:
            raise OutputError(
                f"{relative}: both {self.claimed[key]} and {owner} would be written here"
            )
        self._keys[relative] = key

    def target(self, relative: str) -> Path:
        """The path a claimed ``relative`` is written to."""
        target = self._targets.get(relative)
        if target is None:
            target = self._targets[relative] = Path(self._keys[relative])
        return target

    def _safe_target(self, relative: str) -> str:
        """:func:`safe_join` of ``relative`` as text, resolving each folder once, not each file."""
        folder, _, name = relative.replace("\\", "/").rpartition("/")
        listing = self._folder(folder)
        if listing is None or name in ("", ".", "..") or "\x00" in name:
            return safe_join(self.root, relative, resolved_root=self._resolved_root).as_posix()
        path, names = listing
        if names.get(name, False):  # a link: where it points must be checked
            return safe_join(self.root, relative, resolved_root=self._resolved_root).as_posix()
        return f"{path}/{name}"

    def _folder(self, folder: str) -> tuple[str, dict[str, bool]] | None:
        """The checked path of ``folder`` and its files (name -> is a link); None if unsafe.

        A folder whose parent lists it as a plain folder (not a link) is safe if
        its parent is, so only the root and folders reached through a link are
        resolved: resolving each of a site's 80 folders took 600 ``lstat`` calls.
        """
        listing = self._folders.get(folder)
        if listing is not None:
            return listing
        path: str | None = None
        if folder:
            parent, _, name = folder.rpartition("/")
            if name in ("", ".", "..") or "\x00" in name:
                return None  # safe_join of the whole path gives the error
            above = self._folder(parent)
            if above is None:
                return None
            if name not in self._links.get(parent, ()):
                path = f"{above[0]}/{name}"
        if path is None:
            try:
                resolved = (
                    safe_join(self.root, folder, resolved_root=self._resolved_root)
                    if folder
                    else self.root
                )
            except OutputError:
                return None
            path = resolved.as_posix()
        names: dict[str, bool] = {}
        links: set[str] = set()
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        names[entry.name] = True
                        links.add(entry.name)
                    elif entry.is_file():
                        names[entry.name] = False
        except OSError:
            pass  # not there yet: it holds nothing
        self._links[folder] = links
        self._folders[folder] = listing = (path, names)
        return listing

    def present(self, relative: str) -> bool:
        """Whether a claimed file was on disk when its folder was first looked at."""
        folder, _, name = relative.replace("\\", "/").rpartition("/")
        listing = self._folders.get(folder)
        if listing is None:
            return self.target(relative).exists()
        is_link = listing[1].get(name)
        if is_link is None:
            return False
        return not is_link or self.target(relative).exists()

    def write(self, relative: str, data: bytes, owner: str) -> Path:
        """Write ``data`` to ``relative`` unless the same bytes are already there."""
        self.write_all([(relative, data, owner)])
        return self.target(relative)

    def write_all(self, files: Sequence[tuple[str, bytes | Staged, str]]) -> None:
        """:meth:`write` for many (relative path, data or staged file, owner), flushed together.

        If anything fails, no temporary file is left behind, staged ones included.
        """
        staged: list[Staged] = []
        try:
            made: set[Path] = set()
            for relative, data, owner in files:
                self.claim(relative, owner)
                if isinstance(data, bytes):
                    staged.append(self._stage(relative, data, made))
                else:
                    staged.append(data)
        except BaseException:
            given = [d for _, d, _ in files if isinstance(d, Staged)]
            discard_files({s.temp for s in (*staged, *given) if s.temp})
            raise
        commit_files([(s.temp, self.target(s.relative)) for s in staged if s.temp])
        for item in staged:
            if not item.temp:
                self.unchanged.append(item.relative)
                continue
            self.written.append(item.relative)
            if not item.existed:
                self.created.append(item.relative)

    def stage(self, relative: str, data: bytes | Sequence[bytes]) -> Staged:
        """Write ``data`` for the claimed ``relative`` to a temporary file, for :meth:`write_all`.

        ``data`` may come in parts (a feed of a site's whole history, spliced from its
        entries), written as they are rather than joined first. Touches no state of
        the writer, so a forked worker may call it.
        """
        return self._stage(relative, data, None)

    def _stage(
        self, relative: str, data: bytes | Sequence[bytes], made: set[Path] | None
    ) -> Staged:
        target = self.target(relative)
        existed, same = self._compare(target, data)
        if same:
            return Staged(relative, "", True)
        return Staged(relative, stage_file(target, data, made=made), existed)

    @staticmethod
    def _compare(target: Path, data: bytes | Sequence[bytes]) -> tuple[bool, bool]:
        """Whether ``target`` exists, and whether it holds ``data`` (or its parts) already."""
        # Leaving an unchanged feed alone keeps its mtime, so HTTP caches and
        # conditional requests keep working.
        parts = (data,) if isinstance(data, bytes) else data
        try:
            if target.stat().st_size != sum(map(len, parts)):
                return True, False
            with target.open("rb") as handle:
                # Part by part: a whole feed read at once would double the memory it takes.
                return True, all(handle.read(len(part)) == part for part in parts)
        except OSError:
            return False, False

    def remove_stale(self, relatives: list[str]) -> list[str]:
        """Delete files an earlier build wrote and this one does not; returns those removed.

        Only paths this writer did not claim, inside the output folder; folders
        left empty are removed too.
        """
        removed = []
        for relative in relatives:
            try:
                key = self._safe_target(relative)
            except OutputError:
                continue
            if key in self.claimed:
                continue
            target = Path(key)
            try:
                target.unlink()
            except OSError:
                continue
            removed.append(relative)
            folder = target.parent
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()  # only succeeds when empty
                except OSError:
                    break
                folder = folder.parent
        return removed

"""One process at a time on a site's state: an advisory lock file under ``paths.state``.

``fcntl.flock`` is used rather than "a pid file that exists": the kernel drops
the lock when its holder dies, however it dies (``kill -9`` included), so a
stale file never blocks a new start and nobody has to guess whether the pid
in it is still alive. The pid is written into the file only so that the
refusal can say who holds it.

The file is never deleted: removing it while another process waits on the
old inode would let two processes each believe they hold "the" lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from publisher.config import Config
from publisher.errors import LockError

__all__ = ["DIGEST_LOCK", "RUN_LOCK", "StateLock", "holder_pid", "lock_path"]

RUN_LOCK = "run"  # held by `publisher run` for its whole life
DIGEST_LOCK = "digest"  # held while a digest is being sent, by whichever process sends it


def lock_path(config: Config, name: str) -> Path:
    """Where the lock called ``name`` lives for this site."""
    return config.paths.state / f"{name}.lock"


class StateLock:
    """A non-blocking exclusive lock on ``path``; use as a context manager.

    ``what`` words the refusal: ``already running (pid 123)``.
    """

    def __init__(self, path: Path, what: str = "already running") -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StateLock:
        """Take the lock or raise :class:`LockError` naming the holder's pid."""
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _lock_or_refuse(fd, self.what)
        except BaseException:
            os.close(fd)
            raise
        # Only the holder writes, so a reader that fails to get the lock sees a whole pid.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let go of the lock (the kernel would do it at exit anyway)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holder_pid(path: Path) -> int | None:
    """The pid of the process holding the lock at ``path``, or None if nobody holds it.

    Used by ``publisher status``; it takes and drops the lock to ask the kernel.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            # A shared lock is enough to ask, and never blocks a holder's release.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _lock_or_refuse(fd: int, what: str, tries: int = 3) -> None:
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pid = _read_pid(fd)
            if pid or attempt == tries - 1:
                raise LockError(f"{what} (pid {pid})" if pid else what) from None
            # No pid: a `publisher status` is only asking who holds it. Ask again shortly.
            time.sleep(0.02)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

"""The build cache: what earlier builds learned, so a warm build does little.

Three things are kept, each keyed so that a stale entry can never be used:
parsed posts by file stat and content hash, rendered bodies by content hash
and URL, and each feed's input fingerprint. A corrupt or foreign cache is
ignored, never trusted; the build then runs cold.
"""

from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from publisher import __version__
from publisher.errors import PostError
from publisher.markup import Rendered
from publisher.output import atomic_write
from publisher.posts import Post

__all__ = ["BuildCache", "FileEntry"]

_FORMAT = 1
_NAME = "build.pickle"


@dataclass(slots=True)
class FileEntry:
    """One post file as last read: its stat, its hash and what parsing it gave."""

    mtime_ns: int
    size: int
    digest: str
    result: Post | PostError
    last_good: Post | None = None  # kept so that a post broken by an edit stays in the feeds


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
            with open(folder / _NAME, "rb") as handle:
                stored = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
            return cls(settings=settings)
        if (
            not isinstance(stored, tuple)
            or len(stored) != 3
            or stored[0] != (_FORMAT, __version__)
            or not isinstance(stored[2], cls)
        ):
            return cls(settings=settings)
        cache: BuildCache = stored[2]
        if cache.settings != settings:
            # Post URLs, dates and ids depend on the settings: keep only file hashes' worth.
            return cls(settings=settings)
        return cache

    def save(self, folder: Path) -> None:
        """Write the cache atomically; a failure to save only costs the next build time."""
        with contextlib.suppress(OSError):
            folder.mkdir(parents=True, exist_ok=True)
            data = pickle.dumps(((_FORMAT, __version__), self.settings, self), protocol=5)
            atomic_write(folder / _NAME, data)

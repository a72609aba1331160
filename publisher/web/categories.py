"""The site's categories, as the subscribe and preferences forms offer them.

Read from the published posts (drafts and scheduled posts are not offered)
through one :class:`~publisher.build.reader.SiteReader`, which starts from the
build's cache and keeps it in memory: a post file is parsed again only when
it changed, an unchanged one is not even opened again, and the folder is looked
at again at most every :data:`REFRESH` seconds, so a busy form costs no disk reads.

What it must never do: offer a draft or a scheduled post, or write the build's
cache (the reader's copy stays in memory).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from publisher.build.reader import SiteReader
from publisher.config import Config

__all__ = ["REFRESH", "SiteCategories"]

REFRESH = 10.0  # seconds


class SiteCategories:
    """The categories of the published posts, sorted by name."""

    def __init__(
        self,
        config: Config,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self.reader = SiteReader(config, build_cache=True)
        self._lock = threading.Lock()
        self._names: tuple[str, ...] = ()
        self._read_at: float | None = None

    def names(self) -> tuple[str, ...]:
        """Every category of a published post, in alphabetical order."""
        with self._lock:
            if self._read_at is None or self.monotonic() - self._read_at >= REFRESH:
                posts = self.reader.read(self.clock()).posts
                found = {name for post in posts.published for name in post.categories}
                self._names = tuple(sorted(found, key=lambda n: (n.casefold(), n)))
                self._read_at = self.monotonic()
            return self._names

"""The "view in browser" copy of a digest: ``<output>/digests/<period key>.html``.

One page per period, not personalised: it holds every post that went out in
that period, grouped by category, and no one's name or unsubscribe link, so
it is safe to publish with the site. Written atomically, so a reader who
clicks the link while it is being rewritten still gets a whole page.

Never writes outside ``paths.output``: the path goes through
:func:`publisher.build.output.safe_join`.
"""

from __future__ import annotations

from pathlib import Path

from publisher.build.output import atomic_write, safe_join
from publisher.config import Config
from publisher.site.urls import url_join

__all__ = ["web_copy_path", "web_copy_url", "write_web_copy"]

FOLDER = "digests"


def _relative(period_key: str) -> str:
    return f"{FOLDER}/{period_key}.html"


def web_copy_path(config: Config, period_key: str) -> Path:
    """Where the web copy of ``period_key`` is written (refuses unsafe keys)."""
    return safe_join(config.paths.output, _relative(period_key))


def web_copy_url(config: Config, period_key: str) -> str:
    """The web copy's public, absolute URL."""
    return url_join(config.site.url, "/" + _relative(period_key))


def write_web_copy(config: Config, period_key: str, html: str) -> Path:
    """Write the page atomically and return its path."""
    path = web_copy_path(config, period_key)
    atomic_write(path, html.encode("utf-8"))
    return path

"""Serving the built site (``paths.output``) as it will be published: the preview.

Feeds get their own media types (a browser or feed reader treats
``application/atom+xml`` differently from ``application/xml``), text gets a
charset, and every file an ETag and a Last-Modified date, so feed readers can
poll with conditional requests and receive ``304 Not Modified``. A build
leaves unchanged files alone, so their validators stay the same across builds.

Paths are joined with :func:`publisher.build.output.safe_join`: nothing outside the
output folder is reachable, not through ``..`` nor through a symlink, and
hidden files (a build's temporary files start with a dot) are never served.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Mapping
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from publisher.build.output import safe_join
from publisher.errors import OutputError
from publisher.feeds import FILE_NAMES, MEDIA_TYPES

__all__ = ["etag_for", "find_file", "is_not_modified", "last_modified", "media_type"]

_BY_NAME = {FILE_NAMES[fmt]: MEDIA_TYPES[fmt] for fmt in FILE_NAMES}
_BY_SUFFIX = {
    ".html": "text/html",
    ".htm": "text/html",
    ".opml": "text/x-opml",
    ".xml": "application/xml",
    ".json": "application/json",
    ".css": "text/css",
    ".js": "text/javascript",
    ".txt": "text/plain",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".avif": "image/avif",
}
# Text types that name their charset; JSON is UTF-8 by definition (RFC 8259).
_CHARSET_TYPES = ("text/", "application/xml", "application/atom+xml", "application/rss+xml")


def media_type(name: str) -> str:
    """The Content-Type for a file called ``name`` in the output folder."""
    kind = _BY_NAME.get(name)
    if kind is None:
        suffix = os.path.splitext(name)[1].lower()
        kind = _BY_SUFFIX.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith(_CHARSET_TYPES):
        return f"{kind}; charset=utf-8"
    return kind


def find_file(root: Path, path: str) -> tuple[Path, os.stat_result] | None:
    """The regular file that URL path ``path`` names under ``root``, or None.

    ``""`` and paths ending in ``/`` mean the folder's ``index.html``, as a
    web server would serve them.
    """
    relative = path.lstrip("/")
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    if any(part.startswith(".") for part in relative.split("/")):
        return None
    try:
        target = safe_join(root, relative)
        st = target.stat()
        if stat.S_ISDIR(st.st_mode):
            target = safe_join(root, relative + "/index.html")
            st = target.stat()
    except (OutputError, OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return target, st


def etag_for(st: os.stat_result) -> str:
    """A strong validator that changes whenever a build replaces the file."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def last_modified(st: os.stat_result) -> str:
    """The Last-Modified header value of a file."""
    return formatdate(st.st_mtime, usegmt=True)


def is_not_modified(headers: Mapping[str, str], etag: str, st: os.stat_result) -> bool:
    """Whether a GET with these (lowercase-named) headers may be answered with 304.

    If-None-Match wins over If-Modified-Since when both are sent (RFC 9110, 13.2.2),
    and compares weakly: ``W/"x"`` matches ``"x"``.
    """
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since is None:
        return False
    try:
        when = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:
        return False
    # HTTP dates have whole seconds; the file's time is finer.
    return int(st.st_mtime) <= when.timestamp()

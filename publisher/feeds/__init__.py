"""Feeds: published posts in, RSS 2.0, Atom 1.0, JSON Feed 1.1 and OPML documents out.

Pure: nothing here reads or writes files, so the tests drive it with plain
objects. :mod:`.scopes` decides which feeds exist and what each holds;
:mod:`.documents` writes the current feeds' bytes, :mod:`.archives` the RFC 5005
archive pages'. Imports nothing above :mod:`publisher.site`.
"""

from publisher.feeds.archives import (
    ArchiveWriter,
    Page,
    archive_links,
    full_pages,
    is_page,
    plan_pages,
)
from publisher.feeds.documents import feed_document, feed_parts, opml_document
from publisher.feeds.scopes import (
    FILE_NAMES,
    MEDIA_TYPES,
    Scope,
    in_full,
    plan_scopes,
    post_url,
)

__all__ = [
    "FILE_NAMES",
    "MEDIA_TYPES",
    "ArchiveWriter",
    "Page",
    "Scope",
    "archive_links",
    "feed_document",
    "feed_parts",
    "full_pages",
    "in_full",
    "is_page",
    "opml_document",
    "plan_pages",
    "plan_scopes",
    "post_url",
]

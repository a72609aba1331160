"""Feeds: published posts in, RSS 2.0, Atom 1.0, JSON Feed 1.1 and OPML documents out.

Pure: nothing here reads or writes files, so the tests drive it with plain
objects. :mod:`.scopes` decides which feeds exist and what each holds;
:mod:`.documents` writes their bytes. Imports nothing above :mod:`publisher.site`.
"""

from publisher.feeds.documents import feed_document, opml_document
from publisher.feeds.scopes import FILE_NAMES, MEDIA_TYPES, Scope, plan_scopes, post_url

__all__ = [
    "FILE_NAMES",
    "MEDIA_TYPES",
    "Scope",
    "feed_document",
    "opml_document",
    "plan_scopes",
    "post_url",
]

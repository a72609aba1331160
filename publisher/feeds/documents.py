"""Feed documents: scopes in, RSS 2.0, Atom 1.0, JSON Feed 1.1 and OPML bytes out.

Pure: nothing here reads or writes files, so the tests drive it with plain
objects. One loop covers every (scope, format) pair; a scope is the whole
site, one category or one tag.

Feed semantics worth knowing: RSS has one ``description`` per item, which
readers show as the teaser, so it carries the plain-text summary and the full
HTML goes into ``content:encoded``; Atom has ``summary`` and ``content`` for
the same two roles; JSON Feed has ``summary`` and ``content_html``.

A post's image is Media RSS (``media:content`` and ``media:thumbnail``) in RSS
and Atom alike, Atom's ``<link rel="enclosure">`` being for attachments, and
``image`` in JSON Feed; its attachment (front matter ``enclosure``) is RSS's
``<enclosure>``, Atom's ``<link rel="enclosure">`` and a JSON Feed attachment.
The media namespace is declared only in feeds that show an image, so a feed
without one is what it was before images were read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from publisher import __version__
from publisher.config import Config
from publisher.feeds.entries import (
    EntriesOnly,
    EntryMaker,
    EntrySource,
    lead_summary,
    load_entry_extensions,
    post_enclosure,
    post_image,
    serialize,
    splice,
)
from publisher.feeds.scopes import Scope, in_full, post_url
from publisher.site.markup import Rendered, reading_time
from publisher.site.posts import plain_title

__all__ = [
    "feed_document",
    "feed_parts",
    "feed_updated",
    "json_feed_head",
    "opml_document",
    "quoteattr",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _in_zone(config: Config, moment: datetime) -> datetime:
    return moment.astimezone(config.site.timezone)


def feed_updated(config: Config, scope: Scope) -> datetime:
    """The current feed's time: its newest entry's."""
    # The newest entry's time, not the build time: an unchanged site then yields
    # byte-identical feeds, which keeps HTTP caches and conditional GETs useful.
    newest = max((p.modified for p in scope.posts), default=_EPOCH)
    return _in_zone(config, newest)


def _bodies(
    config: Config, scope: Scope, rendered: Mapping[str, Rendered]
) -> list[Rendered | None]:
    """Each current-feed post's rendered body, None for those shown in summary (see in_full)."""
    full = len(in_full(config, scope))
    return [rendered[p.id] if i < full else None for i, p in enumerate(scope.posts)]


class _ChannelLinks(EntriesOnly):
    """A feedgen feed extension that writes RSS's other ``<atom:link>`` elements:
    ``rel="hub"`` (WebSub) and ``rel="prev-archive"`` (RFC 5005).

    feedgen (1.0) writes only the self link of a feed's links into RSS, so these
    go in here, right after it. (Atom's come from ``fg.link``.)
    """

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []  # (rel, href)

    def extend_rss(self, feed: Any) -> Any:
        from feedgen.util import xml_elem

        channel = feed[0]
        tag = "{http://www.w3.org/2005/Atom}link"
        place = next((i for i, child in enumerate(channel) if child.tag == tag), len(channel) - 1)
        for offset, (rel, href) in enumerate(self.links, start=1):
            link = xml_elem(tag, None, href=href, rel=rel)
            channel.insert(place + offset, link)
        return feed


def _xml_feed(
    config: Config,
    scope: Scope,
    fmt: str,
    links: Sequence[tuple[str, str]],
    entries: EntrySource,
) -> list[bytes]:
    from feedgen.feed import FeedGenerator  # imported late: it costs start-up time

    site = config.site
    full = len(in_full(config, scope))
    # Each entry as made once for every feed that shows it (see publisher.feeds.entries).
    made = [entries(fmt, post, i < full) for i, post in enumerate(scope.posts)]
    fg = FeedGenerator()
    load_entry_extensions(
        fg,
        # An entry holds "<media:" only as an element: text and attributes escape "<".
        images=any(b"<media:" in entry for entry in made),
        attachments=any(post.enclosure is not None for post in scope.posts),
    )
    fg.id(scope.url(config, fmt))
    fg.title(scope.title)
    fg.subtitle(site.description or scope.title)
    # feedgen gives RSS's <link> the last link set: the home page, not the self link.
    fg.link(href=scope.url(config, fmt), rel="self")
    extra = [("hub", hub) for hub in config.feeds.websub_hubs] + list(links)
    if extra and fmt == "atom":
        for rel, href in extra:  # before the alternate link, which RSS's <link> takes
            fg.link(href=href, rel=rel)
    elif extra:
        fg.register_extension("channel_links", _ChannelLinks, None, atom=False, rss=True)
        fg.channel_links.links = extra
    fg.link(href=scope.home(config), rel="alternate")
    fg.language(site.language)
    if site.author:
        fg.author({"name": site.author, **({"email": site.email} if site.email else {})})
    fg.generator("publisher", __version__)
    fg.updated(feed_updated(config, scope))
    return splice(serialize(fg, fmt), fmt, made)


def json_feed_head(config: Config, scope: Scope, feed_url: str) -> dict[str, Any]:
    """What a JSON Feed document of ``scope`` says of itself, before its items."""
    site = config.site
    document: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": scope.title,
        "home_page_url": scope.home(config),
        "feed_url": feed_url,
        "description": site.description or scope.title,
        "language": site.language,
    }
    if site.author:
        document["authors"] = [{"name": site.author}]
    if config.feeds.websub_hubs:
        document["hubs"] = [{"type": "WebSub", "url": hub} for hub in config.feeds.websub_hubs]
    return document


def _json_feed(
    config: Config,
    scope: Scope,
    rendered: Mapping[str, Rendered],
    links: Sequence[tuple[str, str]],
) -> bytes:
    site = config.site
    items: list[dict[str, Any]] = []
    for post, body in zip(scope.posts, _bodies(config, scope, rendered), strict=True):
        title = plain_title(post.title)
        url = post_url(config, post)
        summary = lead_summary(config, post, title) if body is None else body.summary or title
        item: dict[str, Any] = {
            "id": post.id,
            "url": url,
            "title": title,
            "summary": summary,
            "date_published": _in_zone(config, post.date).isoformat(),
            "date_modified": _in_zone(config, post.modified).isoformat(),
        }
        if body is not None and config.feeds.content == "full":
            item["content_html"] = body.html
        else:
            item["content_text"] = summary
        if post.categories or post.tags:
            item["tags"] = list(dict.fromkeys(post.categories + post.tags))
        author = post.author or site.author
        if author:
            item["authors"] = [{"name": author}]
        image = post_image(config, post, body, url)
        if image:
            item["image"] = image
        enclosure = post_enclosure(post, url)
        if enclosure is not None:
            attachment: dict[str, Any] = {"url": enclosure.url, "mime_type": enclosure.type}
            if enclosure.length is not None:
                attachment["size_in_bytes"] = enclosure.length
            item["attachments"] = [attachment]
        # JSON Feed 1.1 lets a publisher add keys that start with "_". Unrendered,
        # only the front matter's reading time is known.
        minutes = (
            post.reading_time
            if body is None
            else reading_time(body, config.feeds, post.reading_time)
        )
        if minutes:
            item["_publisher"] = {"reading_time": minutes}
        items.append(item)
    document = json_feed_head(config, scope, scope.url(config, "json"))
    document["items"] = items
    older = dict(links).get("prev-archive")
    if older:  # JSON Feed 1.1's paging: next_url holds the older items
        document["next_url"] = older
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def feed_document(
    config: Config,
    scope: Scope,
    fmt: str,
    rendered: Mapping[str, Rendered],
    links: Sequence[tuple[str, str]] = (),
    entries: EntrySource | None = None,
) -> bytes:
    """The bytes of one current feed; ``rendered`` maps each post id to its rendered body.

    ``links`` are (rel, URL) pairs the feed also carries: its ``prev-archive``
    link (see :func:`publisher.feeds.archives.archive_links`). ``entries`` makes
    (or has made) the entries' bytes, shared by every feed of a build.
    """
    return b"".join(feed_parts(config, scope, fmt, rendered, links, entries))


def feed_parts(
    config: Config,
    scope: Scope,
    fmt: str,
    rendered: Mapping[str, Rendered],
    links: Sequence[tuple[str, str]] = (),
    entries: EntrySource | None = None,
) -> list[bytes]:
    """:func:`feed_document`'s bytes in parts, to be written as they are (a feed of a
    site's whole history is tens of megabytes: joining them would copy it once more)."""
    if fmt == "json":
        return [_json_feed(config, scope, rendered, links)]
    return _xml_feed(config, scope, fmt, links, entries or EntryMaker(config, rendered))


def opml_document(config: Config, scopes: Iterable[Scope]) -> bytes:
    """An OPML 2.0 subscription list of every feed, for importing into a reader."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{_xml_text(config.site.title)}</title>",
        "  </head>",
        "  <body>",
    ]
    for scope in scopes:
        for fmt in config.feeds.formats:
            if fmt == "json":
                continue  # OPML readers expect XML feeds
            title = quoteattr(f"{scope.title} ({fmt.upper()})")
            lines.append(
                f'    <outline type="rss" text={title} title={title}'
                f" xmlUrl={quoteattr(scope.url(config, fmt))}"
                f" htmlUrl={quoteattr(scope.home(config))}/>"
            )
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines).encode("utf-8")


def _xml_text(text: str) -> str:
    return escape(text, quote=False)


def quoteattr(text: str) -> str:
    """``text`` as a double-quoted XML attribute value."""
    return '"' + escape(text, quote=True) + '"'

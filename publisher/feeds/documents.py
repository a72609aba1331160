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
from publisher.feeds.scopes import Scope, in_full, post_url
from publisher.site.markup import Rendered, absolute_url, cut_text, reading_time
from publisher.site.posts import Enclosure, Post, media_type, plain_title
from publisher.site.urls import url_join

__all__ = [
    "feed_document",
    "feed_updated",
    "json_feed_head",
    "lead_summary",
    "opml_document",
    "post_enclosure",
    "post_image",
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


def post_image(config: Config, post: Post, body: Rendered | None, url: str) -> str:
    """The post's image as an absolute URL (``url`` is the post's), or "".

    Without the rendered ``body`` only the front matter's image is known.
    """
    if post.image:
        return absolute_url(post.image, url)
    return body.image if body is not None and config.feeds.image_from_content else ""


def lead_summary(config: Config, post: Post, title: str) -> str:
    """A summary known without rendering: the excerpt, else the opening paragraph cut short."""
    return post.excerpt or cut_text(post.lead, config.feeds.excerpt_length) or title


def _bodies(
    config: Config, scope: Scope, rendered: Mapping[str, Rendered]
) -> list[Rendered | None]:
    """Each current-feed post's rendered body, None for those shown in summary (see in_full)."""
    full = len(in_full(config, scope))
    return [rendered[p.id] if i < full else None for i, p in enumerate(scope.posts)]


def post_enclosure(post: Post, url: str) -> Enclosure | None:
    """The post's attachment with an absolute URL (``url`` is the post's), or None."""
    enclosure = post.enclosure
    if enclosure is None:
        return None
    return enclosure._replace(url=absolute_url(enclosure.url, url))


class _EntriesOnly:
    """The feed-level half of an extension that adds to entries only (see _Attachment)."""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, feed: Any) -> Any:
        return feed

    def extend_rss(self, feed: Any) -> Any:
        return feed


class _Attachment(_EntriesOnly):
    """A feedgen entry extension that writes the entry's enclosure.

    feedgen (1.0) writes an Atom entry's links with their ``href`` alone, which
    would make an enclosure read as a second alternate link, so both formats'
    elements are written here instead.
    """

    def __init__(self) -> None:
        self.enclosure: Enclosure | None = None

    def extend_atom(self, entry: Any) -> Any:
        from feedgen.util import xml_elem

        if self.enclosure is not None:
            link = xml_elem("link", entry, href=self.enclosure.url, rel="enclosure")
            link.set("type", self.enclosure.type)
            if self.enclosure.length is not None:  # optional in Atom
                link.set("length", str(self.enclosure.length))
        return entry

    def extend_rss(self, entry: Any) -> Any:
        from feedgen.util import xml_elem

        if self.enclosure is not None:
            # RSS requires a length: 0 when it is not known.
            element = xml_elem("enclosure", entry, url=self.enclosure.url)
            element.set("length", str(self.enclosure.length or 0))
            element.set("type", self.enclosure.type)
        return entry


class _ChannelLinks(_EntriesOnly):
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
    rendered: Mapping[str, Rendered],
    links: Sequence[tuple[str, str]],
) -> bytes:
    from feedgen.feed import FeedGenerator  # imported late: it costs start-up time

    site = config.site
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    post_urls = [post_url(config, post) for post in scope.posts]
    bodies = _bodies(config, scope, rendered)
    images = [
        post_image(config, post, body, url)
        for post, body, url in zip(scope.posts, bodies, post_urls, strict=True)
    ]
    if any(images):
        fg.load_extension("media")
    if any(post.enclosure is not None for post in scope.posts):
        fg.register_extension("attachment", _EntriesOnly, _Attachment)
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
    tag_scheme = url_join(site.url, "/tags/")
    for post, body, url, image in zip(scope.posts, bodies, post_urls, images, strict=True):
        fe = fg.add_entry(order="append")
        fe.id(post.id)
        fe.guid(post.id, permalink=False)
        title = plain_title(post.title)
        fe.title(title)
        fe.link(href=url, rel="alternate")
        enclosure = post_enclosure(post, url)
        if enclosure is not None:
            fe.attachment.enclosure = enclosure
        if image:
            # group=None: straight in the entry, not in a <media:group>.
            content = {"url": image, "medium": "image"}
            kind = media_type(image)
            if kind:
                content["type"] = kind
            fe.media.content(content, group=None)
            fe.media.thumbnail({"url": image}, group=None)
        fe.published(_in_zone(config, post.date))
        fe.updated(_in_zone(config, post.modified))
        if body is None:
            fe.summary(lead_summary(config, post, title))
        else:
            fe.summary(body.summary or title)
            if config.feeds.content == "full":
                fe.content(body.html, type="html")
        author = post.author or site.author
        if author:
            fe.author({"name": author})
            fe.dc.dc_creator(author)
        categories = [{"term": c, "label": c} for c in post.categories]
        categories += [{"term": t, "label": t, "scheme": tag_scheme} for t in post.tags]
        if categories:
            fe.category(categories)
    if fmt == "atom":
        data: bytes = fg.atom_str(pretty=True)
    else:
        data = fg.rss_str(pretty=True)
    return data


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
) -> bytes:
    """The bytes of one current feed; ``rendered`` maps each post id to its rendered body.

    ``links`` are (rel, URL) pairs the feed also carries: its ``prev-archive``
    link (see :func:`publisher.feeds.archives.archive_links`).
    """
    if fmt == "json":
        return _json_feed(config, scope, rendered, links)
    return _xml_feed(config, scope, fmt, rendered, links)


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

"""RFC 5005 archives: every post of a scope in fixed pages, and those pages' documents.

The pages of a scope are cut from its history (every post, oldest first) in
runs of ``feeds.archive_page_size``: page 1 holds the oldest posts. A full
page is an *archive* (``fh:archive``): its URL and its bytes never change
again unless one of its own posts is edited, because nothing it holds or
links to depends on later posts. Its links: ``current`` (the scope's current
feed), ``prev-archive`` (the page before, from page 2 on) and ``next-archive``
(the page after, which always exists: see below).

The posts after the newest full page fill the *open* page, which is written
but not marked as an archive, so that the newest full page's
``next-archive`` link is never dangling and never has to be added later.
The current feed links ``prev-archive`` to the newest full page and holds at
least every post of the open page (:func:`~publisher.feeds.scopes.plan_scopes`),
so walking back from it reaches every post, each in exactly one archive.

The documents are written here rather than with feedgen: a site's archives
hold every post it ever published, and feedgen takes some 180 µs to build
and serialize one Atom entry (measured on the benchmark corpus), which on a
10,000-post site would make a cold build several times slower. An entry's
text is made once per format and shared by every page that holds the post
(the site's, and each of its categories'). Entries carry what needs no
Markdown rendering (title, link, dates, author, categories, image,
attachment, and a summary: the writer's excerpt or the body's opening
paragraph); the rendered HTML content only with ``feeds.archive_content: full``.

Pure: posts in, bytes out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from publisher import __version__
from publisher.config import Config
from publisher.feeds.documents import feed_updated, json_feed_head
from publisher.feeds.entries import lead_summary, post_enclosure, post_image
from publisher.feeds.scopes import Scope, post_url
from publisher.site.markup import Rendered, reading_time
from publisher.site.posts import Enclosure, Post, media_type, plain_title
from publisher.site.urls import url_join

__all__ = [
    "ARCHIVE_NS",
    "ArchiveWriter",
    "Page",
    "archive_links",
    "full_pages",
    "is_page",
    "plan_pages",
]

ARCHIVE_NS = "http://purl.org/syndication/history/1.0"
_MEDIA_NS = "http://search.yahoo.com/mrss/"
_EXTENSIONS = {"atom": "xml", "rss": "xml", "json": "json"}


@dataclass(frozen=True)
class Page:
    """One archive document of a scope (in every format)."""

    scope: Scope
    number: int  # 1 holds the oldest posts
    sources: tuple[str, ...]  # its posts' files, oldest first
    closed: bool  # full, and so an archive; the open page (the last) is not

    def path(self, fmt: str) -> str:
        """The page's path relative to the output folder."""
        return _page_path(self.scope, self.number, fmt)

    def url(self, config: Config, fmt: str) -> str:
        return url_join(config.site.url, "/" + self.path(fmt))


_PAGE_PATH = re.compile(
    r"(?:^|/)archive/(?:atom|rss)/[1-9][0-9]*\.xml$|(?:^|/)archive/json/[1-9][0-9]*\.json$"
)


def is_page(relative: str) -> bool:
    """Whether ``relative`` (a path in the output folder) is an archive page's."""
    return _PAGE_PATH.search(relative) is not None


def _page_path(scope: Scope, number: int, fmt: str) -> str:
    return f"{scope.folder}archive/{fmt}/{number}.{_EXTENSIONS[fmt]}"


def _page_url(config: Config, scope: Scope, number: int, fmt: str) -> str:
    return url_join(config.site.url, "/" + _page_path(scope, number, fmt))


def full_pages(config: Config, scope: Scope) -> int:
    """How many full (archive) pages ``scope`` has; 0 with archives off."""
    if not config.feeds.archive:
        return 0
    return len(scope.history) // config.feeds.archive_page_size


def plan_pages(config: Config, scope: Scope) -> list[Page]:
    """The archive pages of ``scope``: its full pages, then the open page.

    None while the scope has fewer posts than a page holds: its current feed
    then holds all of them (see :func:`~publisher.feeds.scopes.plan_scopes`).
    """
    full = full_pages(config, scope)
    if full == 0:
        return []
    size = config.feeds.archive_page_size
    history = scope.history
    pages = [Page(scope, i + 1, history[i * size : (i + 1) * size], True) for i in range(full)]
    pages.append(Page(scope, full + 1, history[full * size :], False))
    return pages


def archive_links(config: Config, scope: Scope, fmt: str) -> list[tuple[str, str]]:
    """The current feed's archive link: ``prev-archive`` to the newest full page, if any."""
    full = full_pages(config, scope)
    return [("prev-archive", _page_url(config, scope, full, fmt))] if full else []


def _page_links(config: Config, page: Page, fmt: str) -> list[tuple[str, str]]:
    links = [("current", page.scope.url(config, fmt))]
    if page.number > 1:
        links.append(("prev-archive", _page_url(config, page.scope, page.number - 1, fmt)))
    if page.closed:
        links.append(("next-archive", _page_url(config, page.scope, page.number + 1, fmt)))
    return links


class _Entry(NamedTuple):
    """What an archive entry says, worked out once per post for every format."""

    id: str
    title: str
    url: str
    published_iso: str  # in the site's time zone; each written in two formats: made once
    updated_iso: str
    published_rfc822: str
    summary: str
    html: str  # "" unless feeds.archive_content is "full"
    author: str
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    image: str
    enclosure: Enclosure | None
    reading_time: int  # minutes; 0 when not known without rendering


def _text(value: str) -> str:
    # Most values need no escaping: three membership tests are cheaper than three replaces.
    if "&" in value or "<" in value or ">" in value:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def _attr(value: str) -> str:
    return '"' + _text(value).replace('"', "&quot;") + '"'


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _rfc822(moment: datetime) -> str:
    """``email.utils.format_datetime(moment)``, in a third of its time (RSS's pubDate)."""
    offset = moment.utcoffset()
    if offset is None or offset.seconds % 60 or offset.microseconds:
        return format_datetime(moment)  # no zone, or one of seconds: as email.utils says
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]}"
        f" {moment.year:04d} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
        f" {sign}{hours:02d}{minutes:02d}"
    )


def _json_item(e: _Entry) -> str:
    """The entry as a JSON Feed item: what ``json.dumps(item, ensure_ascii=False)`` gives.

    Written out by hand, strings escaped by json's own C encoder: building a
    dict and dumping it took twice as long, and a site's archives hold every
    post. The item's ``summary`` is left out when ``content_text`` (the same
    text) carries it: JSON Feed makes it optional.
    """
    js = encode_basestring
    parts = [f'{{"id": {js(e.id)}, "url": {js(e.url)}, "title": {js(e.title)}']
    if e.html:
        parts.append(f', "summary": {js(e.summary)}')
    parts.append(f', "date_published": "{e.published_iso}", "date_modified": "{e.updated_iso}"')
    if e.html:
        parts.append(f', "content_html": {js(e.html)}')
    else:
        parts.append(f', "content_text": {js(e.summary)}')
    if e.categories or e.tags:
        tags = dict.fromkeys(e.categories + e.tags)
        parts.append(', "tags": [' + ", ".join(map(js, tags)) + "]")
    if e.author:
        parts.append(f', "authors": [{{"name": {js(e.author)}}}]')
    if e.image:
        parts.append(f', "image": {js(e.image)}')
    if e.enclosure is not None:
        size = (
            f', "size_in_bytes": {int(e.enclosure.length)}'
            if e.enclosure.length is not None
            else ""
        )
        parts.append(
            f', "attachments": [{{"url": {js(e.enclosure.url)}, '
            f'"mime_type": {js(e.enclosure.type)}{size}}}]'
        )
    if e.reading_time:
        parts.append(f', "_publisher": {{"reading_time": {int(e.reading_time)}}}')
    parts.append("}")
    return "".join(parts)


class ArchiveWriter:
    """Makes archive pages, each post's entry text made once per format.

    ``bodies`` maps post ids to rendered bodies; they are needed (and used)
    only with ``feeds.archive_content: full``.
    """

    def __init__(self, config: Config, bodies: Mapping[str, Rendered]) -> None:
        self.config = config
        self.bodies = bodies
        self.full = config.feeds.archive_content == "full"
        self._tag_scheme = url_join(config.site.url, "/tags/")
        self._entries: dict[str, _Entry] = {}
        # Each post's entry in each format, encoded: a page is then one join of bytes.
        self._made: dict[tuple[str, str], bytes] = {}
        self._term_lines: dict[tuple[str, str, str], str] = {}

    def document(self, page: Page, fmt: str, posts: Sequence[Post]) -> bytes:
        """The bytes of ``page`` in ``fmt``; ``posts`` are its posts, newest first."""
        texts = [self._item(post, fmt) for post in posts]
        if fmt == "json":
            return self._json(page, texts)
        return self._xml(page, fmt, posts, texts)

    def _item(self, post: Post, fmt: str) -> bytes:
        """The post's entry (Atom), item (RSS) or item (JSON Feed), a line of its own, encoded."""
        key = (post.source, fmt)
        text = self._made.get(key)
        if text is None:
            entry = self._entry(post)
            if fmt == "json":
                made = "    " + _json_item(entry)
            else:
                made = (self._atom_entry(entry) if fmt == "atom" else self._rss_item(entry)) + "\n"
            text = self._made[key] = made.encode("utf-8")
        return text

    # --- what an entry says ----------------------------------------------------------------

    def _entry(self, post: Post) -> _Entry:
        entry = self._entries.get(post.source)
        if entry is not None:
            return entry
        config = self.config
        zone = config.site.timezone
        url = post_url(config, post)
        title = plain_title(post.title)
        if self.full:
            body = self.bodies[post.id]
            summary, html = body.summary or title, body.html
            image = post_image(config, post, body, url)
            minutes = reading_time(body, config.feeds, post.reading_time)
        else:
            summary, html = lead_summary(config, post, title), ""
            image = post_image(config, post, None, url)
            minutes = post.reading_time
        published = post.date.astimezone(zone)
        updated = post.modified.astimezone(zone)
        published_iso = published.isoformat()
        entry = _Entry(
            id=post.id,
            title=title,
            url=url,
            published_iso=published_iso,
            updated_iso=published_iso if updated == published else updated.isoformat(),
            published_rfc822=_rfc822(published),
            summary=summary,
            html=html,
            author=post.author or config.site.author,
            categories=post.categories,
            tags=post.tags,
            image=image,
            enclosure=post_enclosure(post, url),
            reading_time=minutes,
        )
        self._entries[post.source] = entry
        return entry

    # --- Atom and RSS ---------------------------------------------------------------------

    def _terms(self, fmt: str, e: _Entry) -> str:
        """The entry's category lines; each name's line is made once (names repeat a lot)."""
        lines = []
        for kind, names in (("c", e.categories), ("t", e.tags)):
            for name in names:
                key = (fmt, kind, name)
                line = self._term_lines.get(key)
                if line is None:
                    line = self._term_line(fmt, kind == "t", name)
                    self._term_lines[key] = line
                lines.append(line)
        return "".join(lines)

    def _term_line(self, fmt: str, tag: bool, name: str) -> str:
        scheme = _attr(self._tag_scheme)
        if fmt == "atom":
            scheme_attr = f" scheme={scheme}" if tag else ""
            return f"\n    <category term={_attr(name)}{scheme_attr} label={_attr(name)}/>"
        domain = f" domain={scheme}" if tag else ""
        return f"\n      <category{domain}>{_text(name)}</category>"

    def _atom_entry(self, e: _Entry) -> str:
        author = (
            f"\n    <author>\n      <name>{_text(e.author)}</name>\n    </author>"
            if e.author
            else ""
        )
        content = f'\n    <content type="html">{_text(e.html)}</content>' if e.html else ""
        enclosure = ""
        if e.enclosure is not None:
            length = f" length={_attr(str(e.enclosure.length))}" if e.enclosure.length else ""
            enclosure = (
                f'\n    <link href={_attr(e.enclosure.url)} rel="enclosure"'
                f" type={_attr(e.enclosure.type)}{length}/>"
            )
        return (
            f"  <entry>\n    <id>{_text(e.id)}</id>\n    <title>{_text(e.title)}</title>"
            f"\n    <updated>{e.updated_iso}</updated>{author}{content}"
            f'\n    <link href={_attr(e.url)} rel="alternate"/>{enclosure}'
            f"\n    <summary>{_text(e.summary)}</summary>{self._terms('atom', e)}"
            f"\n    <published>{e.published_iso}</published>{self._media(e, '')}"
            "\n  </entry>"
        )

    def _rss_item(self, e: _Entry) -> str:
        content = f"\n      <content:encoded>{_text(e.html)}</content:encoded>" if e.html else ""
        enclosure = ""
        if e.enclosure is not None:
            # RSS requires a length: 0 when it is not known.
            enclosure = (
                f"\n      <enclosure url={_attr(e.enclosure.url)}"
                f' length="{e.enclosure.length or 0}" type={_attr(e.enclosure.type)}/>'
            )
        creator = f"\n      <dc:creator>{_text(e.author)}</dc:creator>" if e.author else ""
        return (
            f"    <item>\n      <title>{_text(e.title)}</title>\n      <link>{_text(e.url)}</link>"
            f"\n      <description>{_text(e.summary)}</description>{content}"
            f'\n      <guid isPermaLink="false">{_text(e.id)}</guid>{enclosure}'
            f"{self._terms('rss', e)}\n      <pubDate>{e.published_rfc822}</pubDate>"
            f"{creator}{self._media(e, '  ')}\n    </item>"
        )

    @staticmethod
    def _media(e: _Entry, indent: str) -> str:
        if not e.image:
            return ""
        kind = media_type(e.image)
        kind_attr = f" type={_attr(kind)}" if kind else ""
        image = _attr(e.image)
        return (
            f'\n{indent}    <media:content url={image} medium="image"{kind_attr}/>'
            f"\n{indent}    <media:thumbnail url={image}/>"
        )

    def _header(self, page: Page, fmt: str, posts: Sequence[Post]) -> list[str]:
        """What an XML page says about itself: titles, links, the archive mark."""
        config, scope, site = self.config, page.scope, self.config.site
        newest = max((p.modified for p in posts), default=None)
        # An empty open page is as of the current feed.
        updated = (
            feed_updated(config, scope) if newest is None else newest.astimezone(site.timezone)
        )
        links = [("self", page.url(config, fmt))]
        links += [("hub", hub) for hub in config.feeds.websub_hubs]
        links += _page_links(config, page, fmt)
        mark = ["<fh:archive/>"] if page.closed else []
        description = site.description or scope.title
        if fmt == "atom":
            lines = [
                f"  <id>{_text(page.url(config, fmt))}</id>",
                f"  <title>{_text(scope.title)}</title>",
                f"  <updated>{updated.isoformat()}</updated>",
            ]
            if site.author:
                email = f"\n    <email>{_text(site.email)}</email>" if site.email else ""
                lines.append(
                    f"  <author>\n    <name>{_text(site.author)}</name>{email}\n  </author>"
                )
            lines += [f"  <link href={_attr(href)} rel={_attr(rel)}/>" for rel, href in links]
            lines += [
                f'  <link href={_attr(scope.home(config))} rel="alternate"/>',
                f'  <generator version="{__version__}">publisher</generator>',
                f"  <subtitle>{_text(description)}</subtitle>",
            ]
            return lines + ["  " + m for m in mark]
        lines = [
            "  <channel>",
            f"    <title>{_text(scope.title)}</title>",
            f"    <link>{_text(scope.home(config))}</link>",
            f"    <description>{_text(description)}</description>",
        ]
        lines += [f"    <atom:link href={_attr(href)} rel={_attr(rel)}/>" for rel, href in links]
        lines += ["    " + m for m in mark]
        lines += [
            "    <docs>http://www.rssboard.org/rss-specification</docs>",
            "    <generator>publisher</generator>",
            f"    <language>{_text(site.language)}</language>",
            f"    <lastBuildDate>{format_datetime(updated)}</lastBuildDate>",
        ]
        return lines

    def _xml(self, page: Page, fmt: str, posts: Sequence[Post], texts: list[bytes]) -> bytes:
        # Without full content an entry's image is the front matter's, and there is
        # no content: what the namespaces depend on is known without the entries.
        if self.full:
            entries = [self._entry(post) for post in posts]
            html, image = any(e.html for e in entries), any(e.image for e in entries)
        else:
            html, image = False, any(post.image for post in posts)
        namespaces = []
        if fmt == "rss":
            namespaces.append('xmlns:dc="http://purl.org/dc/elements/1.1/"')
            namespaces.append('xmlns:atom="http://www.w3.org/2005/Atom"')
            if html:
                namespaces.append('xmlns:content="http://purl.org/rss/1.0/modules/content/"')
        else:
            namespaces.append('xmlns="http://www.w3.org/2005/Atom"')
        namespaces.append(f'xmlns:fh="{ARCHIVE_NS}"')
        if image:
            namespaces.append(f'xmlns:media="{_MEDIA_NS}"')
        declared = " ".join(namespaces)
        lines = ["<?xml version='1.0' encoding='UTF-8'?>"]
        if fmt == "atom":
            lines.append(f"<feed {declared} xml:lang={_attr(self.config.site.language)}>")
        else:
            lines.append(f'<rss {declared} version="2.0">')
        lines += self._header(page, fmt, posts)
        head = ("\n".join(lines) + "\n").encode("utf-8")
        tail = b"</feed>\n" if fmt == "atom" else b"  </channel>\n</rss>\n"
        return head + b"".join(texts) + tail

    # --- JSON Feed ------------------------------------------------------------------------

    def _json(self, page: Page, texts: list[bytes]) -> bytes:
        config = self.config
        document = json_feed_head(config, page.scope, page.url(config, "json"))
        # JSON Feed pages with next_url towards older items; the rest is RFC 5005's
        # vocabulary, in an extension object as JSON Feed 1.1 allows.
        links = dict(_page_links(config, page, "json"))
        if "prev-archive" in links:
            document["next_url"] = links["prev-archive"]
        archive: dict[str, Any] = {"archive": page.closed, "current_url": links["current"]}
        if "next-archive" in links:
            archive["next_archive_url"] = links["next-archive"]
        document["_publisher"] = archive
        head = json.dumps(document, ensure_ascii=False, indent=2)
        items = b",\n".join(texts)
        start = (head[:-2] + ',\n  "items": [').encode("utf-8")
        return start + (b"\n" + items + b"\n  ]\n}\n" if items else b"]\n}\n")

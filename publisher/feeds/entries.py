"""A current feed's entries, made once per post and format, and documents spliced from them.

A post shown in the site's feed and in two category feeds used to pass through
feedgen's entry building and lxml's serializing three times per format; on a
site that keeps its whole history in its feeds that was most of a build. Here
an entry is made once, as the bytes it has inside a pretty-printed document,
and every document of that format that shows it takes those bytes as they are.
The build caches them with the rendered bodies, so a warm build after one edit
assembles cached bytes instead of making every entry again.

feedgen still builds each entry. Its bytes are cut out of a small *frame*
document (a feed with that one entry): lxml indents an element by its depth
and declares a namespace only where an ancestor has not, so an entry cut from
a frame of the same depth, whose root declares the namespaces it uses, is
byte for byte what the entry is in the whole document. A document is then its
feed-level part, made by feedgen with no entries, with the entries' bytes put
where feedgen appends entries (last in ``<feed>`` and in ``<channel>``).

Pure: posts in, bytes out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from importlib.metadata import version
from typing import Any

from publisher.config import Config
from publisher.feeds.scopes import post_url
from publisher.site.markup import Rendered, absolute_url, cut_text
from publisher.site.posts import Enclosure, Post, media_type, plain_title
from publisher.site.urls import url_join

__all__ = [
    "XML_FORMATS",
    "EntriesOnly",
    "EntryMaker",
    "EntrySource",
    "entry_settings",
    "fill_entry",
    "lead_summary",
    "load_entry_extensions",
    "post_enclosure",
    "post_image",
    "serialize",
    "splice",
]

XML_FORMATS = ("atom", "rss")

#: What follows the last entry in a pretty-printed document of each format: the
#: entries go right before it.
_TAILS = {"atom": b"</feed>\n", "rss": b"  </channel>\n</rss>\n"}

#: An entry's bytes by (format, post, whether it is shown in full or in summary).
EntrySource = Callable[[str, Post, bool], bytes]


def entry_settings(config: Config) -> str:
    """What an entry's bytes depend on besides its post and body: cached ones made under
    other settings (or by another feedgen or lxml) are not used.

    The site's time zone and URL are not here: a cache made with others is void already.
    """
    feeds, site = config.feeds, config.site
    return repr(
        (
            version("feedgen"),
            version("lxml"),
            site.author,
            feeds.content,
            feeds.image_from_content,
            feeds.excerpt_length,
        )
    )


def post_image(config: Config, post: Post, body: Rendered | None, url: str) -> str:
    """The post's image as an absolute URL (``url`` is the post's), or "".

    Without the rendered ``body`` only the front matter's image is known.
    """
    if post.image:
        return absolute_url(post.image, url)
    return body.image if body is not None and config.feeds.image_from_content else ""


def post_enclosure(post: Post, url: str) -> Enclosure | None:
    """The post's attachment with an absolute URL (``url`` is the post's), or None."""
    enclosure = post.enclosure
    if enclosure is None:
        return None
    return enclosure._replace(url=absolute_url(enclosure.url, url))


def lead_summary(config: Config, post: Post, title: str) -> str:
    """A summary known without rendering: the excerpt, else the opening paragraph cut short."""
    return post.excerpt or cut_text(post.lead, config.feeds.excerpt_length) or title


class EntriesOnly:
    """The feed-level half of an extension that adds to entries only (see _Attachment)."""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, feed: Any) -> Any:
        return feed

    def extend_rss(self, feed: Any) -> Any:
        return feed


class _Attachment(EntriesOnly):
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


def load_entry_extensions(fg: Any, *, images: bool, attachments: bool) -> None:
    """Load into feedgen's ``fg`` the extensions its entries use, in the order they apply.

    The same for a whole document and for an entry's frame, so that an entry's
    elements come out in the same order in both.
    """
    fg.load_extension("dc", atom=False, rss=True)
    if images:
        fg.load_extension("media")
    if attachments:
        fg.register_extension("attachment", EntriesOnly, _Attachment)


def _in_zone(config: Config, moment: datetime) -> datetime:
    return moment.astimezone(config.site.timezone)


def fill_entry(config: Config, fe: Any, post: Post, body: Rendered | None) -> None:
    """Set feedgen entry ``fe`` to show ``post``, in full with ``body``, else in summary."""
    site = config.site
    url = post_url(config, post)
    fe.id(post.id)
    fe.guid(post.id, permalink=False)
    title = plain_title(post.title)
    fe.title(title)
    fe.link(href=url, rel="alternate")
    enclosure = post_enclosure(post, url)
    if enclosure is not None:
        fe.attachment.enclosure = enclosure
    image = post_image(config, post, body, url)
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
    tag_scheme = url_join(site.url, "/tags/")
    categories = [{"term": c, "label": c} for c in post.categories]
    categories += [{"term": t, "label": t, "scheme": tag_scheme} for t in post.tags]
    if categories:
        fe.category(categories)


def serialize(fg: Any, fmt: str) -> bytes:
    """feedgen's document as the feeds are written: pretty-printed UTF-8."""
    data: bytes = fg.atom_str(pretty=True) if fmt == "atom" else fg.rss_str(pretty=True)
    return data


def splice(skeleton: bytes, fmt: str, entries: Iterable[bytes]) -> list[bytes]:
    """The parts of the document whose feed-level part is ``skeleton`` (made by feedgen
    without entries) and whose entries are ``entries``, in order; joined, they are the
    document feedgen makes with those entries."""
    tail = _TAILS[fmt]
    if not skeleton.endswith(tail):
        raise ValueError(f"feedgen's {fmt} document does not end as expected: {skeleton[-40:]!r}")
    cut = len(skeleton) - len(tail)
    return [skeleton[:cut], *entries, skeleton[cut:]]


class _Frame:
    """A feed with no entries of its own, in which one entry at a time is serialized."""

    def __init__(self, fmt: str, images: bool, attachments: bool) -> None:
        from feedgen.feed import FeedGenerator  # imported late: it costs start-up time

        self.fmt = fmt
        self.fg = fg = FeedGenerator()
        load_entry_extensions(fg, images=images, attachments=attachments)
        # The fields feedgen requires, and no more: the frame's own bytes are cut away.
        fg.id("frame")
        fg.title("frame")
        fg.link(href="https://frame.invalid/", rel="alternate")
        fg.description("frame")
        fg.updated(datetime(1970, 1, 1).astimezone())
        skeleton = serialize(fg, fmt)
        self.head = len(splice(skeleton, fmt, ())[0])
        self.tail = len(_TAILS[fmt])
        self.prefix = skeleton[: self.head]

    def entry(self, fill: Callable[[Any], None]) -> bytes:
        fe = self.fg.add_entry(order="append")
        try:
            fill(fe)
            data = serialize(self.fg, self.fmt)
        finally:
            self.fg.remove_entry(fe)
        if not data.startswith(self.prefix):  # feedgen put something after the entries
            raise ValueError(f"feedgen's {self.fmt} entry is not where it was expected")
        return data[self.head : len(data) - self.tail]


class EntryMaker:
    """Each post's entry bytes per format, made once: kept for every document of this
    maker (one process's share of a build) that shows the post.

    ``bodies`` holds the rendered body of each post shown in full; ``made`` the
    entries made already (by the render step, or read from the cache), by
    (format, post id, shown in full).
    """

    def __init__(
        self,
        config: Config,
        bodies: Mapping[str, Rendered] | None = None,
        made: dict[tuple[str, str, bool], bytes] | None = None,
    ) -> None:
        self.config = config
        self.bodies = bodies if bodies is not None else {}
        self.made = made if made is not None else {}
        self._frames: dict[tuple[str, bool, bool], _Frame] = {}

    def __call__(self, fmt: str, post: Post, full: bool) -> bytes:
        key = (fmt, post.id, full)
        data = self.made.get(key)
        if data is None:
            body = self.bodies[post.id] if full else None
            data = self.made[key] = self.make(fmt, post, body)
        return data

    def make(self, fmt: str, post: Post, body: Rendered | None) -> bytes:
        """The entry's bytes, in full with ``body``, else in summary; made now, not kept."""
        config = self.config
        images = bool(post_image(config, post, body, post_url(config, post)))
        frame_key = (fmt, images, post.enclosure is not None)
        frame = self._frames.get(frame_key)
        if frame is None:
            frame = self._frames[frame_key] = _Frame(*frame_key)
        return frame.entry(lambda fe: fill_entry(config, fe, post, body))

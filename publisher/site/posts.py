"""Posts: Markdown files with YAML front matter, read with Jekyll's semantics.

:func:`parse_post` turns one file's bytes into a :class:`Post` or raises a
:class:`~publisher.errors.PostError` that names the file, line, column and
field. It does no I/O, so tests drive it with plain bytes. :func:`split_posts`
decides, given the time, which posts are published, which wait for their date
and which are drafts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import lru_cache
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote, urlsplit

from publisher.errors import PostError
from publisher.site import fields
from publisher.site.dates import parse_date
from publisher.site.fields import Enclosure, media_type, plain_title
from publisher.site.lead import lead_text
from publisher.site.matter import MatterError, load_matter, split_matter
from publisher.site.urls import expand_permalink, slugify

__all__ = [
    "MAX_POST_BYTES",
    "Enclosure",
    "Post",
    "PostSet",
    "content_digest",
    "is_post_file",
    "media_type",
    "parse_post",
    "plain_title",
    "read_body",
    "remove_xml_illegal",
    "split_posts",
]

# A post is a few kilobytes; anything near this is a mistake or an attack, and
# refusing it before reading keeps memory bounded.
MAX_POST_BYTES = 4 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})-(.+)$")
# XML 1.0 forbids these code points; one of them in a title breaks a whole feed.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What urllib's quote(..., safe="/-._~") leaves as it is.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~/-]*")
_T = TypeVar("_T")


class Post(NamedTuple):
    """One post's metadata. Its body is read again only if some output needs it.

    A named tuple rather than a dataclass: a warm build rebuilds ten thousand
    of these from the cache, and a tuple is made in one C call where a frozen
    dataclass sets each field through object.__setattr__.
    """

    source: str  # path relative to the site folder, with forward slashes
    title: str
    date: datetime
    slug: str
    permalink: str  # URL path, not percent-encoded; starts with "/"
    id: str
    digest: str  # hash of the file's bytes, for caches
    body_line: int  # 1-based line where the Markdown body starts
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    author: str = ""
    excerpt: str = ""
    updated: datetime | None = None
    draft: bool = False
    warnings: tuple[str, ...] = ()
    image: str = ""  # front matter image: absolute, or relative to the post's URL
    enclosure: Enclosure | None = None
    reading_time: int = 0  # minutes, from the front matter; 0: worked out from the body
    # The body's first paragraph as plain text when there is no excerpt (see site.lead).
    lead: str = ""

    @property
    def modified(self) -> datetime:
        """When the post last changed, for a feed entry's updated time."""
        return self.updated or self.date


@dataclass
class PostSet:
    """Every post of a site sorted into what a build does with it."""

    published: list[Post] = field(default_factory=list)  # newest first
    scheduled: list[Post] = field(default_factory=list)  # soonest first
    drafts: list[Post] = field(default_factory=list)
    errors: list[PostError] = field(default_factory=list)


def content_digest(data: bytes) -> str:
    """The hash that names a post file's bytes in caches and fingerprints.

    SHA-256 runs on the CPU's SHA instructions where there are some, twice as
    fast here as BLAKE2b; 128 bits are plenty to tell versions of a file apart.
    """
    return hashlib.sha256(data).hexdigest()[:32]


def is_post_file(name: str) -> bool:
    """True for ``*.md`` and ``*.markdown`` files that are not editor leftovers."""
    if name.startswith((".", "#")) or name.endswith("~"):
        return False
    return name.endswith((".md", ".markdown"))


def remove_xml_illegal(text: str) -> tuple[str, bool]:
    """Strip code points XML forbids; report whether any were found."""
    cleaned = _XML_ILLEGAL.sub("", text)
    return cleaned, len(cleaned) != len(text)


def _body_problem(source: str, data: bytes, start: int) -> PostError | None:
    """The error for a body (``data[start:]``) that is not UTF-8, or None."""
    body = data[start:]
    if body.isascii():
        return None
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        line = data.count(b"\n", 0, at) + 1
        col = at - (data.rfind(b"\n", 0, at) + 1) + 1
        return PostError(source, f"not valid UTF-8 (byte 0x{data[at]:02X})", line, col, "body")
    return None


def _decode(source: str, data: bytes, first_line: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + first_line
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PostError(
            source, "invalid UTF-8 (save the file as UTF-8)", line, col, "encoding"
        ) from None


def _field_position(matter: str, name: str, first_line: int, key: str = "") -> tuple[int, int]:
    """Line and column of a top-level key's value, for error messages.

    With ``key``, of that key's value inside the field's mapping when it is
    found there (an indented block or a one-line ``{...}``).
    """
    pattern = re.compile(rf"^{re.escape(name)}[ \t]*:[ \t]*", re.MULTILINE)
    match = pattern.search(matter)
    if not match:
        return first_line, 1
    at = match.end()
    if key:
        # The field's value runs until the next line that is not indented.
        end = re.compile(r"\n(?=[^ \t\n])").search(matter, at)
        inner = re.compile(rf"(?:^[ \t]+|[{{,][ \t]*){re.escape(key)}[ \t]*:[ \t]*", re.MULTILINE)
        found = inner.search(matter, at, end.start() if end else len(matter))
        if found:
            at = found.end()
    line = matter.count("\n", 0, at) + first_line
    col = at - (matter.rfind("\n", 0, at) + 1) + 1
    return line, col


@lru_cache(maxsize=8)
def _host(site_url: str) -> str:
    return urlsplit(site_url).hostname or "localhost"


class _FieldError(Exception):
    """A field's value cannot be used; parse_post adds the file, line and column."""

    def __init__(self, name: str, message: str, key: str = "") -> None:
        super().__init__(message)
        self.name = name
        self.key = key  # the key of the field's mapping at fault, such as enclosure's length


def _get(meta: dict[str, Any], name: str, convert: Callable[..., _T], *args: Any) -> _T | None:
    """``convert(meta[name], *args)``, or None when the field is missing or null."""
    value = meta.get(name)
    if value is None:
        return None
    try:
        return convert(value, *args)
    except ValueError as exc:
        raise _FieldError(name, str(exc), getattr(exc, "key", "")) from None


def parse_post(
    source: str,
    data: bytes,
    *,
    tz: tzinfo,
    permalink: str,
    site_url: str,
    stem: str | None = None,
    id_key: str | None = None,
    digest: str | None = None,
) -> Post:
    """Read one post from its bytes.

    ``source`` names the file in messages; ``stem`` is its file name without the
    extension (taken from ``source`` when omitted); ``id_key`` is its path under
    the posts folder without the extension, the stable part of its id; ``digest``
    is the bytes' hash when the caller already has it;
    ``permalink`` is the site's pattern. Raises PostError naming the line and
    column of the first problem.
    """
    if len(data) > MAX_POST_BYTES:
        raise PostError(
            source, f"file is larger than {MAX_POST_BYTES // 1024 // 1024} MB", 1, 1, "size"
        )
    digest = digest or content_digest(data)
    try:
        matter_bytes, first_line, body_offset = split_matter(data)
        matter = _decode(source, matter_bytes, first_line)
        meta = load_matter(matter, first_line)
    except MatterError as exc:
        raise PostError(source, str(exc), exc.line, exc.col, "front matter") from None
    if not isinstance(meta, dict):
        raise PostError(
            source, "must be a mapping of keys to values", first_line, 1, "front matter"
        )
    # The offset is counted after a byte-order mark, which split_matter skips.
    body_line = data.count(b"\n", 0, body_offset + (3 if data.startswith(_BOM) else 0)) + 1

    warnings: list[str] = []
    # One search of the whole front matter spares a search per field in the usual
    # case; a backslash may be a YAML escape that makes a forbidden character.
    suspect = "\\" in matter or _XML_ILLEGAL.search(matter) is not None

    def clean(name: str, text: str) -> str:
        cleaned, changed = remove_xml_illegal(text)
        if changed:
            line, col = _field_position(matter, name, first_line)
            warnings.append(f"{source}:{line}:{col}: {name}: removed characters that XML forbids")
        return cleaned

    without_ext = source.rsplit(".", 1)[0] if "." in source.rsplit("/", 1)[-1] else source
    stem = stem if stem is not None else without_ext.rsplit("/", 1)[-1]
    prefix = _DATE_PREFIX.match(stem)

    # Fields are read in a fixed order, so the first problem is always the one reported.
    try:
        title = _get(meta, "title", fields.text) or ""
        if suspect:
            title = clean("title", title)
        if not title:
            raise _FieldError("title", "missing: every post needs a title")

        date = _get(meta, "date", parse_date, tz)
        if date is None and prefix:
            try:
                date = parse_date(prefix.group(1), tz)
            except ValueError as exc:
                raise PostError(source, f"file name: {exc}", 1, 1, "date") from None
        elif date is None:
            raise _FieldError(
                "date", "missing: give a date, or start the file name with YYYY-MM-DD-"
            )
        updated = _get(meta, "last_modified_at", parse_date, tz)
        if updated is None:
            updated = _get(meta, "updated", parse_date, tz)

        categories = (_get(meta, "categories", fields.names) or []) + (
            _get(meta, "category", fields.names) or []
        )
        tags = (_get(meta, "tags", fields.names) or []) + (_get(meta, "tag", fields.names) or [])
        categories = list(dict.fromkeys(categories))
        tags = list(dict.fromkeys(tags))
        if suspect:
            categories = [clean("categories", c) for c in categories]
            tags = [clean("tags", t) for t in tags]

        slug_source = _get(meta, "slug", fields.text) or (prefix.group(2) if prefix else stem)
        slug = slugify(slug_source, lower=False, pretty=True) or "post"
        pattern = _get(meta, "permalink", fields.text) or permalink
        # Jekyll's :categories is each name lowercased, not slugified; the URL is
        # percent-encoded when written. A "/" in a name must not add a folder level.
        names = [c.lower().replace("/", "-") for c in categories]
        path = expand_permalink(pattern, slug=slug, date=date, categories=names)

        explicit_id = _get(meta, "id", fields.text) or _get(meta, "guid", fields.text) or ""
        author = _get(meta, "author", fields.author) or ""
        excerpt = _get(meta, "excerpt", fields.text) or ""
        image = _get(meta, "image", fields.image) or ""
        enclosure = _get(meta, "enclosure", fields.enclosure)
    except _FieldError as exc:
        line, col = _field_position(matter, exc.name, first_line, exc.key)
        raise PostError(source, str(exc), line, col, exc.name) from None
    # Informational only, and written by hand in many Jekyll sites ("5 min read"):
    # a value that cannot be read is a warning, and the time is worked out instead.
    reading_time = 0
    if meta.get("reading_time") is not None:
        try:
            reading_time = fields.minutes(meta["reading_time"])
        except ValueError as exc:
            line, col = _field_position(matter, "reading_time", first_line)
            warnings.append(
                f"{source}:{line}:{col}: reading_time: {exc}; worked out from the body instead"
            )
    if suspect:
        explicit_id = clean("id", explicit_id)
        author = clean("author", author)
        excerpt = clean("excerpt", excerpt)

    host = _host(site_url)
    day = prefix.group(1) if prefix else date.strftime("%Y-%m-%d")
    # The id comes from the file's path, never from its text, so editing a post's
    # title or body never makes readers show it as a new entry.
    path_key = id_key or without_ext
    if not _URL_SAFE.fullmatch(path_key):
        path_key = quote(path_key, safe="/-._~")
    post_id = explicit_id or f"tag:{host},{day}:{path_key}"

    draft = bool(meta.get("draft") is True or meta.get("published") is False)
    # Checked last, so that a problem in the front matter, which comes first in
    # the file, is the one reported. A body that is not UTF-8 would otherwise be
    # published with replacement characters and no word to the writer.
    body_start = body_offset + (3 if data.startswith(_BOM) else 0)
    problem = _body_problem(source, data, body_start)
    if problem is not None:
        raise problem
    # An archive entry's summary, when the writer gave none (made here, where the
    # body is at hand, so that archives need not render every post).
    lead = "" if excerpt else remove_xml_illegal(lead_text(data[body_start:].decode()))[0]

    return Post(
        source=source,
        title=title,
        date=date,
        slug=slug,
        permalink=path,
        id=post_id,
        digest=digest,
        body_line=body_line,
        categories=tuple(categories),
        tags=tuple(tags),
        author=author,
        excerpt=excerpt,
        updated=updated,
        draft=draft,
        warnings=tuple(warnings),
        image=image,
        enclosure=enclosure,
        reading_time=reading_time,
        lead=lead,
    )


def read_body(data: bytes) -> str:
    """Return the Markdown body of a post's bytes (everything after the front matter)."""
    try:
        _, _, offset = split_matter(data)
    except MatterError:
        offset = 0
    if data.startswith(_BOM):
        data = data[3:]
    return data[offset:].decode("utf-8", errors="replace")


def split_posts(posts: Iterable[Post], errors: Iterable[PostError], now: datetime) -> PostSet:
    """Sort posts into published (newest first), scheduled (soonest first) and drafts."""
    result = PostSet(errors=list(errors))
    for post in posts:
        if post.draft:
            result.drafts.append(post)
        elif post.date > now:
            result.scheduled.append(post)
        else:
            result.published.append(post)
    # By date, ties by source: two stable sorts on one attribute each take a
    # quarter of the time of one sort on a (date, source) key built per post.
    by_source, by_date = attrgetter("source"), attrgetter("date")
    result.published.sort(key=by_source, reverse=True)
    result.published.sort(key=by_date, reverse=True)
    result.scheduled.sort(key=by_source)
    result.scheduled.sort(key=by_date)
    return result

"""A new post's file name and text, as ``publisher new`` and ``publisher init`` write them.

The front matter has the seed post's form (``posts/2025-09-07-ms-aws-cloud-ai.md``):
a quoted title, ``date: 2026-12-24 09:00:00 +0900`` in the site's offset, flow lists of
categories and tags, the author. Every value is checked here so that the file reads
back through :func:`publisher.site.posts.parse_post` as exactly what was asked: a title
that is not one line, or a name that would not survive the reader, is refused now rather
than found by the next build.

Pure: no I/O.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime

from publisher.config.yamlsafe import quoted
from publisher.site.urls import slugify

__all__ = ["MAX_SLUG_BYTES", "check_name", "check_slug", "check_title", "file_name", "post_text"]

#: A file name holds at most 255 bytes on common file systems; the slug leaves room for
#: the date and extension, and for a few numbered copies of a title.
MAX_SLUG_BYTES = 200

# Unicode categories a title or name must not hold: controls, surrogates, and line and
# paragraph separators (YAML and the feeds would end a line there).
_REFUSED = {"Cc", "Cs", "Zl", "Zp"}


def _problem(text: str) -> str:
    """Why ``text`` cannot be a title or a name; "" if it can."""
    if any(c in "\r\n\x85\u2028\u2029" for c in text):
        return "must be one line"
    bad = next((c for c in text if unicodedata.category(c) in _REFUSED), None)
    if bad is not None or "\ufffe" in text or "\uffff" in text:
        shown = bad if bad is not None else "\ufffe"
        return f"must not hold the control character U+{ord(shown):04X}"
    return ""


def check_title(title: str) -> str:
    """``title`` stripped of surrounding spaces, as the post reader strips it; else ValueError."""
    problem = _problem(title)
    if problem:
        raise ValueError(problem)
    title = title.strip()
    if not title:
        raise ValueError("must not be empty")
    return title


def check_name(name: str) -> str:
    """A category or tag, stripped as the post reader strips it; ValueError if unusable."""
    problem = _problem(name)
    if problem:
        raise ValueError(f"{name!r} {problem}")
    name = name.strip()
    if not name:
        raise ValueError("must not be empty")
    return name


def _shorten(slug: str) -> str:
    """``slug`` cut to MAX_SLUG_BYTES of UTF-8, at a hyphen when there is one to cut at."""
    if len(slug.encode("utf-8")) <= MAX_SLUG_BYTES:
        return slug
    cut = slug.encode("utf-8")[:MAX_SLUG_BYTES].decode("utf-8", errors="ignore")
    head, hyphen, _ = cut.rpartition("-")
    return (head if hyphen and head else cut).strip("-")


def check_slug(slug: str | None, title: str) -> str:
    """The file name's slug: ``slug`` as given, else made from ``title``.

    A slug made from the title is :func:`~publisher.site.urls.slugify`'s (Unicode
    letters kept, ``AI技術の今`` gives ``ai技術の今``). A given one must be what the post
    reader would make of it (Jekyll's "pretty" slug, case kept), so that the URL is the
    file name. ValueError when there is none to be had.
    """
    if slug is None:
        made = _shorten(slugify(title))
        if not made:
            raise ValueError(f"cannot make a slug from the title {title!r}")
        return made
    cleaned = slugify(slug, lower=False, pretty=True)
    if not cleaned:
        raise ValueError(f"{slug!r} has no letters or digits")
    if cleaned != slug:
        raise ValueError(f"{slug!r} is not a slug; {cleaned!r} would be")
    if len(slug.encode("utf-8")) > MAX_SLUG_BYTES:
        raise ValueError(f"must be at most {MAX_SLUG_BYTES} bytes long")
    return slug


def file_name(date: datetime, slug: str) -> str:
    """``YYYY-MM-DD-slug.md``, the date being ``date``'s own (give it in the site's zone)."""
    return f"{date:%Y-%m-%d}-{slug}.md"


def _names(names: Iterable[str]) -> str:
    return "[" + ", ".join(quoted(name) for name in names) + "]"


def post_text(
    title: str,
    date: datetime,
    *,
    categories: Iterable[str] = (),
    tags: Iterable[str] = (),
    author: str = "",
    excerpt: str = "",
    draft: bool = False,
    body: str = "",
) -> str:
    """The post file's text: front matter in the seed's form, then ``body``.

    ``date`` is written to the second with its own UTC offset, so give it in the site's
    zone. Titles and names are checked (ValueError) and names deduplicated, in order.
    """
    lines = [
        "---",
        f"title: {quoted(check_title(title))}",
        f"date: {date.replace(microsecond=0):%Y-%m-%d %H:%M:%S %z}",
        f"categories: {_names(dict.fromkeys(check_name(c) for c in categories))}",
        f"tags: {_names(dict.fromkeys(check_name(t) for t in tags))}",
    ]
    if author:
        lines.append(f"author: {quoted(check_name(author))}")
    if excerpt:
        lines.append(f"excerpt: {quoted(check_title(excerpt))}")
    if draft:
        lines.append("draft: true")
    lines.append("---")
    return "\n".join(lines) + "\n" + body

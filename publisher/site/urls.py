"""Slugs, permalinks and URLs.

Slugs keep Unicode letters (``AI技術`` becomes ``ai技術``), as Jekyll's default
slugify does, so Japanese categories get readable feed folders. Wherever a URL
is written into a feed it is percent-encoded, because feed validators and some
readers reject raw non-ASCII in links.

Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from urllib.parse import quote

__all__ = ["assign_slugs", "expand_permalink", "slugify", "url_join"]

# Anything that is not a letter, a mark or a decimal digit separates words.
_SEPARATORS = re.compile(r"[^\w]+|_+")
# Jekyll's "pretty" mode, used for post slugs, also keeps "_", "." and "~".
_PRETTY_SEPARATORS = re.compile(r"[^\w.~-]+")


def slugify(text: str, *, lower: bool = True, pretty: bool = False) -> str:
    """Join the words of ``text`` with hyphens, keeping Unicode letters.

    Lowercase by default; ``pretty`` keeps ``_ . ~`` as Jekyll does for post slugs.
    """
    text = unicodedata.normalize("NFKC", text)
    if lower:
        text = text.lower()
    slug = (_PRETTY_SEPARATORS if pretty else _SEPARATORS).sub("-", text).strip("-")
    # A slug is one path segment: "." and ".." would not be.
    return slug if slug.strip(".") else ""


def assign_slugs(names: Iterable[str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Give every name a slug of its own.

    Two names that slug alike (``C++`` and ``C#``) must never overwrite each
    other's feed, so every name after the first, in sorted order, gets a
    numeric suffix. The result is the same whatever order the names come in.
    """
    taken: dict[str, str] = {}
    result: dict[str, str] = {}
    # Names with an explicit slug claim it first; others are suffixed around them.
    ordered = sorted(set(names), key=lambda n: (n not in overrides, n))
    for name in ordered:
        base = overrides.get(name) or slugify(name) or "untitled"
        slug, n = base, 1
        while slug in taken and taken[slug] != name:
            n += 1
            slug = f"{base}-{n}"
        taken[slug] = name
        result[name] = slug
    return result


_PLACEHOLDER = re.compile(
    r"(:(?:short_year|year|i_month|month|i_day|y_day|day|hour|minute|second|title|slug|"
    r"categories|output_ext))"
)


# Each placeholder as a str.format field, so that a pattern becomes one format
# string, parsed once and expanded in a single call.
_FIELDS = {
    "year": "{d.year:04d}",
    "short_year": "{short_year:02d}",
    "month": "{d.month:02d}",
    "i_month": "{d.month}",
    "day": "{d.day:02d}",
    "i_day": "{d.day}",
    "y_day": "{y_day:03d}",
    "hour": "{d.hour:02d}",
    "minute": "{d.minute:02d}",
    "second": "{d.second:02d}",
    "title": "{slug}",
    "slug": "{slug}",
    "categories": "{categories}",
    "output_ext": "{ext}",
}


@lru_cache(maxsize=32)
def _template(pattern: str) -> tuple[str, bool]:
    """The pattern as a format string, and whether it needs the day of the year."""
    fields = []
    for piece in _PLACEHOLDER.split(pattern):
        if piece[:1] == ":" and piece[1:] in _FIELDS:
            fields.append(_FIELDS[piece[1:]])
        else:
            fields.append(piece.replace("{", "{{").replace("}", "}}"))
    template = "".join(fields)
    return template, "{y_day" in template


def expand_permalink(
    pattern: str, *, slug: str, date: datetime, categories: list[str], ext: str = ".html"
) -> str:
    """Expand a Jekyll permalink pattern such as ``/:categories/:year/:title.html``.

    The result is a path (not yet percent-encoded) that always starts with ``/``
    and never holds an empty segment.
    """
    template, needs_y_day = _template(pattern)
    path = template.format(
        d=date,
        slug=slug,
        categories="/".join(categories),
        ext=ext,
        short_year=date.year % 100,
        y_day=date.timetuple().tm_yday if needs_y_day else 0,
    )
    if path[:1] == "/" and "//" not in path and "/." not in path:
        return path  # no empty, "." or ".." segment to drop: already in shape
    trailing = "/" if path.endswith("/") else ""
    segments = [s for s in path.split("/") if s not in ("", ".", "..")]
    return "/" + "/".join(segments) + (trailing if segments else "")


_URL_SAFE = "/:@!$&'()*+,;=-._~%"
# What quote() leaves alone with _URL_SAFE: letters, digits and those characters.
_PLAIN_URL = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~%]*")


def url_join(base: str, path: str) -> str:
    """Join the site's base URL and a path, percent-encoding what a URL may not hold."""
    # A site's archives name every post's URL, and quote() costs some 5 µs a
    # path: a plain path is left as it is, and the others are quoted segment by
    # segment, the category segments (which repeat) once each.
    if not _PLAIN_URL.fullmatch(path):
        path = "/".join(map(_quote_segment, path.split("/")))
    return base.rstrip("/") + path


@lru_cache(maxsize=4096)
def _quote_segment(segment: str) -> str:
    return segment if _PLAIN_URL.fullmatch(segment) else quote(segment, safe=_URL_SAFE)

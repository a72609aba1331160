"""Slugs, permalinks and URLs.

Slugs keep Unicode letters (``AI技術`` becomes ``ai技術``), as Jekyll's default
slugify does, so Japanese categories get readable feed folders. Wherever a URL
is written into a feed it is percent-encoded, because feed validators and some
readers reject raw non-ASCII in links.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
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
    return "" if set(slug) <= {"."} else slug


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


_DATE_PARTS: dict[str, Callable[[datetime], str]] = {
    "year": lambda d: f"{d.year:04d}",
    "short_year": lambda d: f"{d.year % 100:02d}",
    "month": lambda d: f"{d.month:02d}",
    "i_month": lambda d: str(d.month),
    "day": lambda d: f"{d.day:02d}",
    "i_day": lambda d: str(d.day),
    "y_day": lambda d: f"{d.timetuple().tm_yday:03d}",
    "hour": lambda d: f"{d.hour:02d}",
    "minute": lambda d: f"{d.minute:02d}",
    "second": lambda d: f"{d.second:02d}",
}


@lru_cache(maxsize=32)
def _pieces(pattern: str) -> tuple[str, ...]:
    """The pattern split into literal text and ``:placeholder`` pieces, parsed once."""
    return tuple(piece for piece in _PLACEHOLDER.split(pattern) if piece)


def expand_permalink(
    pattern: str, *, slug: str, date: datetime, categories: list[str], ext: str = ".html"
) -> str:
    """Expand a Jekyll permalink pattern such as ``/:categories/:year/:title.html``.

    The result is a path (not yet percent-encoded) that always starts with ``/``
    and never holds an empty segment.
    """
    values = {
        "title": slug,
        "slug": slug,
        "categories": "/".join(categories),
        "output_ext": ext,
    }
    path = "".join(
        (values[part[1:]] if part[1:] in values else _DATE_PARTS[part[1:]](date))
        if part[:1] == ":" and (part[1:] in values or part[1:] in _DATE_PARTS)
        else part
        for part in _pieces(pattern)
    )
    trailing = "/" if path.endswith("/") else ""
    segments = [s for s in path.split("/") if s not in ("", ".", "..")]
    return "/" + "/".join(segments) + (trailing if segments else "")


def url_join(base: str, path: str) -> str:
    """Join the site's base URL and a path, percent-encoding what a URL may not hold."""
    return base.rstrip("/") + quote(path, safe="/:@!$&'()*+,;=-._~%")

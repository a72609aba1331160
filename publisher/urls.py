"""Slugs, permalinks and URLs.

Slugs keep Unicode letters (``AI技術`` becomes ``ai技術``), as Jekyll's default
slugify does, so Japanese categories get readable feed folders. Wherever a URL
is written into a feed it is percent-encoded, because feed validators and some
readers reject raw non-ASCII in links.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from urllib.parse import quote

__all__ = ["assign_slugs", "expand_permalink", "slugify", "url_join"]

# Anything that is not a letter, a mark or a decimal digit separates words.
_SEPARATORS = re.compile(r"[^\w]+|_+")


def slugify(text: str, *, lower: bool = True) -> str:
    """Join the words of ``text`` with hyphens, keeping Unicode letters; lowercase by default."""
    text = unicodedata.normalize("NFKC", text)
    if lower:
        text = text.lower()
    return _SEPARATORS.sub("-", text).strip("-")


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


def expand_permalink(
    pattern: str, *, slug: str, date: datetime, categories: list[str], ext: str = ".html"
) -> str:
    """Expand a Jekyll permalink pattern such as ``/:categories/:year/:title.html``.

    The result is a path (not yet percent-encoded) that always starts with ``/``
    and never holds an empty segment.
    """
    values = {
        "year": f"{date.year:04d}",
        "short_year": f"{date.year % 100:02d}",
        "month": f"{date.month:02d}",
        "i_month": str(date.month),
        "day": f"{date.day:02d}",
        "i_day": str(date.day),
        "y_day": f"{date.timetuple().tm_yday:03d}",
        "hour": f"{date.hour:02d}",
        "minute": f"{date.minute:02d}",
        "second": f"{date.second:02d}",
        "title": slug,
        "slug": slug,
        "categories": "/".join(categories),
        "output_ext": ext,
    }
    path = re.sub(
        r":(short_year|year|i_month|month|i_day|y_day|day|hour|minute|second|title|slug|"
        r"categories|output_ext)",
        lambda m: values[m.group(1)],
        pattern,
    )
    trailing = "/" if path.endswith("/") else ""
    segments = [s for s in path.split("/") if s not in ("", ".", "..")]
    return "/" + "/".join(segments) + (trailing if segments else "")


def url_join(base: str, path: str) -> str:
    """Join the site's base URL and a path, percent-encoding what a URL may not hold."""
    return base.rstrip("/") + quote(path, safe="/:@!$&'()*+,;=-._~%")

"""Front matter values, checked and typed: what each key of a post may hold.

Each reader takes a raw YAML value and returns it typed, or raises
``ValueError`` (:class:`KeyProblem` when one key of a mapping is wrong) saying
what it must be; :func:`publisher.site.posts.parse_post` turns that into one
``path:line:col: field: message`` line. Also here: a title as plain text for
feeds, and the media types of attachments.

Pure: no I/O.
"""

from __future__ import annotations

import html
import math
import re
from typing import Any, NamedTuple
from urllib.parse import urlsplit

__all__ = [
    "Enclosure",
    "KeyProblem",
    "author",
    "enclosure",
    "image",
    "media_type",
    "minutes",
    "names",
    "plain_title",
    "text",
]

# A media type as RFC 6838 spells it (type/subtype), with optional parameters.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(?: *;[ -~]*)?")
# Media types of the files posts attach most, by extension: a fixed table rather
# than the mimetypes module, which reads the machine's own lists.
_MEDIA_TYPES = {
    "aac": "audio/aac",
    "avif": "image/avif",
    "epub": "application/epub+zip",
    "flac": "audio/flac",
    "gif": "image/gif",
    "jpeg": "image/jpeg",
    "jpg": "image/jpeg",
    "m4a": "audio/mp4",
    "m4v": "video/x-m4v",
    "mov": "video/quicktime",
    "mp3": "audio/mpeg",
    "mp4": "video/mp4",
    "oga": "audio/ogg",
    "ogg": "audio/ogg",
    "opus": "audio/opus",
    "pdf": "application/pdf",
    "png": "image/png",
    "svg": "image/svg+xml",
    "wav": "audio/wav",
    "webm": "video/webm",
    "webp": "image/webp",
    "zip": "application/zip",
}


class Enclosure(NamedTuple):
    """A file attached to a post (a podcast episode, a PDF): front matter ``enclosure``."""

    url: str  # as written: absolute, or relative to the post's URL
    length: int | None  # bytes; None when not given
    type: str  # media type, given or known from the URL's extension


# A tag or a comment: "<" followed by a tag name (so "a < b" is text), up to its ">".
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)


def plain_title(text: str) -> str:
    """A title as plain text, as jekyll-feed writes it: tags stripped, character
    references decoded once, white space (line breaks too) folded to single spaces.

    Feeds then escape it for their own format, so ``Tom &amp; Jerry <b>bold</b>``
    reads "Tom & Jerry bold" in every feed reader and no feed carries undeclared
    HTML in a title. (Digests and pages show the title as written, escaped.)
    """
    if "<" in text:
        text = _TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return " ".join(text.split())


def names(value: Any) -> list[str]:
    """Jekyll's categories and tags: a list, or a string of space-separated names."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        names = []
        for item in value:
            if isinstance(item, str):
                name = item.strip()
            elif isinstance(item, dict | list) or item is None:
                raise ValueError("must be a list of names or a space-separated string")
            else:
                name = str(item).strip()
            if name:
                names.append(name)
        return names
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    raise ValueError("must be a list of names or a space-separated string")


def text(value: Any) -> str:
    if isinstance(value, bool):
        # YAML 1.1 (Jekyll's too) reads a bare yes/no/on/off/true/false as a boolean.
        raise ValueError("must be text; put it in quotes (a bare yes, no, on or off is a boolean)")
    if isinstance(value, dict | list) or value is None:
        raise ValueError("must be text")
    return str(value).strip()


def author(value: Any) -> str:
    if isinstance(value, dict):
        return text(value.get("name", ""))
    if isinstance(value, list):
        return ", ".join(text(v) for v in value)
    return text(value)


class KeyProblem(ValueError):
    """One key of a field's mapping cannot be used: "key: message", pointed at that key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def media_type(url: str) -> str:
    """The media type of a file known from its URL's extension, or ""."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    name = path.rsplit("/", 1)[-1]
    if "." not in name:
        return ""
    return _MEDIA_TYPES.get(name.rsplit(".", 1)[-1].lower(), "")


def _link(value: Any) -> str:
    """A URL of a file: http(s), or a path that the feeds make absolute against the post's URL."""
    if not isinstance(value, str):
        raise ValueError(f"must be a URL or a path, got {_shown(value)}")
    url = value.strip()
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        raise ValueError(f"is not a valid URL: {url!r}") from None
    if scheme and scheme.lower() not in ("http", "https"):
        raise ValueError(f"must be an http(s) URL or a path, got {url!r}")
    return url


def image(value: Any) -> str:
    """Jekyll's ``image``: a URL or a path, or jekyll-seo-tag's mapping with ``path``."""
    if isinstance(value, dict):
        if value.get("path") is None:
            raise KeyProblem("path", "missing: a mapping gives the image's URL as path")
        try:
            return _link(value["path"])
        except ValueError as exc:
            raise KeyProblem("path", str(exc)) from None
    if not isinstance(value, str):
        raise ValueError(f"must be a URL or a path, or a mapping with path, got {_shown(value)}")
    return _link(value)


def enclosure(value: Any) -> Enclosure:
    """``enclosure``: a mapping with ``url`` and, if known, ``length`` (bytes) and ``type``."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping with url, length and type, got {_shown(value)}")
    try:
        url = _link(value["url"]) if value.get("url") is not None else ""
    except ValueError as exc:
        raise KeyProblem("url", str(exc)) from None
    if not url:
        raise KeyProblem("url", "missing: an enclosure needs the file's URL")
    length = value.get("length")
    if isinstance(length, str) and length.strip().isascii() and length.strip().isdigit():
        length = int(length)
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or length < 0
    ):
        raise KeyProblem(
            "length", f"must be the file's size in bytes, a whole number 0 or more, got {length!r}"
        )
    kind = value.get("type")
    if kind is None or kind == "":
        kind = media_type(url) or "application/octet-stream"
    elif not isinstance(kind, str) or not _MEDIA_TYPE.fullmatch(kind.strip()):
        raise KeyProblem("type", f"must be a media type such as audio/mpeg, got {_shown(kind)}")
    return Enclosure(url, length, kind.strip())


def minutes(value: Any) -> int:
    """``reading_time``: a number of minutes greater than 0, rounded up."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | float) or not 0 < number < math.inf:
        raise ValueError(f"must be a number of minutes greater than 0, got {_shown(value)}")
    return math.ceil(number)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."

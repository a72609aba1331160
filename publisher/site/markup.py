"""Markdown to safe, self-contained HTML, and plain-text excerpts.

Feed readers show entry HTML out of the site's context, so relative links must
be made absolute against the post's own URL, and anything that runs script
must go: the HTML passes an allowlist sanitizer (nh3, the Ammonia bindings)
rather than a hand-written blocklist, which is the kind of code that misses a
case.

A rendered body also keeps its first image and the size of its text (words,
and CJK characters, which are read by the character), so that the build's
cache of bodies holds all a feed needs; :func:`reading_time` turns that size
into minutes at the configured rates, which therefore never void the cache.

Pure: no I/O; the body comes in as text.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin

import nh3

from publisher.config import FeedsConfig
from publisher.site.posts import remove_xml_illegal

if TYPE_CHECKING:
    import markdown

__all__ = ["Rendered", "absolute_url", "cut_text", "html_to_text", "reading_time", "render"]

_local = threading.local()

# Sentence ends of Japanese and English prose: a cut here reads as finished.
_SENTENCE_END = "。！？!?．.」』"
_FIRST_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_BLOCK_END = re.compile(r"</(?:p|div|h[1-6]|li|dd|dt|tr|td|th|blockquote|pre)>|<br\s*/?>", re.I)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
# The sanitizer writes every attribute in double quotes.
_IMG_SRC = re.compile(r'<img\s[^>]*?(?<=\s)src="([^"]*)"')
# Text from U+3000 up (CJK punctuation, kana, Hangul, CJK ideographs, full-width
# forms; emoji too) is read by the character, text below it by the word. Counted
# in the UTF-8 bytes, where such a character is the one whose first byte is 0xE3
# or more: each becomes a separator (\v, which no sanitized text holds) and the
# bytes that continue a character are dropped, so that the rest splits into words.
_BY_CHARACTER = bytes(0x0B if byte >= 0xE3 else byte for byte in range(256))
_CONTINUATION = bytes(range(0x80, 0xC0))
# What quote() leaves as it is in a URL written by hand: its reserved characters
# and percent escapes; spaces, non-ASCII and the like are encoded, as the
# sanitizer encodes them in the body's links.
_URL_KEEP = ":/?#[]@!$&'()*+,;=%~"


@dataclass(frozen=True)
class Rendered:
    """A post body made ready for a feed or an email."""

    html: str  # sanitized, with absolute URLs
    summary: str  # plain text, cut to length
    had_illegal_chars: bool = False
    image: str = ""  # the first <img src> of html (absolute http(s)), or ""
    # The text's size for its reading time: words of space-separated scripts, and
    # Chinese, Japanese and Korean characters, which are read at another rate.
    words: int = 0
    cjk_chars: int = 0


def _converter() -> markdown.Markdown:
    md: markdown.Markdown | None = getattr(_local, "md", None)
    if md is None:
        # Imported on first use: a warm build often renders nothing.
        import markdown
        from markdown.extensions import (
            abbr,
            attr_list,
            def_list,
            fenced_code,
            footnotes,
            md_in_html,
            sane_lists,
            tables,
        )

        # "extra" plus sane lists, given as instances: named extensions are looked up
        # through installed packages' entry points, which costs 40 ms at start-up.
        extensions = [
            abbr.AbbrExtension(),
            attr_list.AttrListExtension(),
            def_list.DefListExtension(),
            fenced_code.FencedCodeExtension(),
            footnotes.FootnoteExtension(),
            md_in_html.MarkdownInHtmlExtension(),
            tables.TableExtension(),
            sane_lists.SaneListExtension(),
        ]
        md = markdown.Markdown(extensions=extensions, output_format="html")
        _local.md = md
    return md


def sanitize(fragment: str, base_url: str) -> str:
    """Keep only safe HTML and resolve relative URLs against ``base_url``."""
    return nh3.clean(
        fragment,
        url_relative=("rewrite_with_base", base_url),
        link_rel=None,
    )


def render(body: str, base_url: str, *, excerpt: str = "", excerpt_length: int = 200) -> Rendered:
    """Render a Markdown body to sanitized HTML with a plain-text summary.

    ``base_url`` is the post's own absolute URL; ``excerpt`` is the writer's
    own summary, used as given when present.
    """
    body, had_illegal = remove_xml_illegal(body)
    raw = _converter().reset().convert(body)
    safe = sanitize(raw, base_url)
    summary = excerpt
    if not summary:
        first = _FIRST_PARAGRAPH.search(safe)
        summary = cut_text(html_to_text(first.group(1) if first else safe), excerpt_length)
    words, cjk_chars = _text_size(safe)
    return Rendered(
        html=safe,
        summary=summary,
        had_illegal_chars=had_illegal,
        image=_first_image(safe),
        words=words,
        cjk_chars=cjk_chars,
    )


def _first_image(fragment: str) -> str:
    """The ``src`` of the first image of sanitized HTML, if it is an absolute http(s) URL."""
    if "<img" not in fragment:
        return ""
    for match in _IMG_SRC.finditer(fragment):
        src = html.unescape(match.group(1)).strip()
        if src.startswith(("https://", "http://")):
            return src
    return ""


def _text_size(fragment: str) -> tuple[int, int]:
    """(words, CJK characters) of the visible text of sanitized HTML."""
    text = _TAG.sub("", _BLOCK_END.sub(" ", fragment))
    if "&" in text:
        text = html.unescape(text)
    if text.isascii():
        return len(text.split()), 0
    # Byte operations: a regular expression over the text takes three times as long.
    marked = text.encode("utf-8").translate(_BY_CHARACTER, _CONTINUATION)
    return len(marked.split()), marked.count(b"\v")


def reading_time(body: Rendered, feeds: FeedsConfig, given: int = 0) -> int:
    """Minutes to read a post: ``given`` (its front matter's ``reading_time``) when
    more than 0, else its words at ``feeds.reading_words_per_minute`` plus its CJK
    characters at ``feeds.reading_chars_per_minute``, rounded up; at least 1.
    """
    if given > 0:
        return given
    wpm, cpm = feeds.reading_words_per_minute, feeds.reading_chars_per_minute
    # Whole numbers, so that a post of exactly 200 words is 1 minute, not 2.
    return max(1, -(-(body.words * cpm + body.cjk_chars * wpm) // (wpm * cpm)))


def absolute_url(url: str, base_url: str) -> str:
    """``url`` (absolute, or relative to ``base_url``) as an absolute URL, percent-encoded
    where the sanitizer encodes the body's links (spaces, non-ASCII)."""
    return urljoin(base_url, quote(url, safe=_URL_KEEP))


def html_to_text(fragment: str) -> str:
    """The visible text of an HTML fragment, on one line."""
    # Block ends separate words; inline tags (<code>, <em>) must not add spaces.
    text = _TAG.sub("", _BLOCK_END.sub(" ", fragment))
    return _SPACE.sub(" ", html.unescape(text)).strip()


def cut_text(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters where a reader expects a break.

    Japanese has no spaces between words, so the cut prefers the end of a
    sentence, then a space, and only then a plain character boundary; it
    never splits a character from the combining marks that follow it.
    """
    if len(text) <= limit:
        return text
    window = text[: limit + 1]
    floor = limit // 2
    for i in range(limit - 1, floor, -1):
        if window[i] in _SENTENCE_END and (window[i] != "." or window[i + 1].isspace()):
            return text[: i + 1]
    space = window.rfind(" ", floor, limit)
    cut = space if space > 0 else limit - 1
    while cut > 0 and (unicodedata.combining(text[cut]) or text[cut] in "\u200d\ufe0e\ufe0f"):
        cut -= 1
    return text[:cut].rstrip() + "…"

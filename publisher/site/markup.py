"""Markdown to safe, self-contained HTML, and plain-text excerpts.

Feed readers show entry HTML out of the site's context, so relative links must
be made absolute against the post's own URL, and anything that runs script
must go: the HTML passes an allowlist sanitizer (nh3, the Ammonia bindings)
rather than a hand-written blocklist, which is the kind of code that misses a
case.

Pure: no I/O; the body comes in as text.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import nh3

from publisher.site.posts import remove_xml_illegal

if TYPE_CHECKING:
    import markdown

__all__ = ["Rendered", "cut_text", "html_to_text", "render"]

_local = threading.local()

# Sentence ends of Japanese and English prose: a cut here reads as finished.
_SENTENCE_END = "。！？!?．.」』"
_FIRST_PARAGRAPH = re.compile(r"<p>(.*?)</p>", re.DOTALL)
_BLOCK_END = re.compile(r"</(?:p|div|h[1-6]|li|dd|dt|tr|td|th|blockquote|pre)>|<br\s*/?>", re.I)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Rendered:
    """A post body made ready for a feed or an email."""

    html: str  # sanitized, with absolute URLs
    summary: str  # plain text, cut to length
    had_illegal_chars: bool = False


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
    return Rendered(html=safe, summary=summary, had_illegal_chars=had_illegal)


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

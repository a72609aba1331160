"""A post's opening paragraph as plain text, read from the Markdown source.

Archive pages (RFC 5005) hold every post a site ever published, and a cold
build must make them without rendering ten thousand bodies: rendering costs
some 2 ms a post, this some 10 µs. So the summary of an archive entry is the
writer's ``excerpt`` or this text: the first plain paragraph of the body
(headings, code, lists, quotes, tables, raw HTML and link definitions are
passed over) with its inline markup taken away. It can differ from the
summary a render gives (which is the first ``<p>`` of the HTML, whatever
block holds it) in such details; it is never markup.

Pure: text in, text out.
"""

from __future__ import annotations

import html
import re

__all__ = ["LEAD_LIMIT", "lead_text"]

#: Characters kept: more than any summary is cut to, and a bound on memory.
LEAD_LIMIT = 1000

# Blocks of one line (headings, rules), and lines that open a block of several
# (quotes, lists, raw HTML, tables, link definitions, indented code).
_ONE_LINE = re.compile(r"^ {0,3}(?:#|(?:[-*_][ \t]*){3,}$)")
_NOT_PARAGRAPH = re.compile(
    r"^(?: {0,3}(?:>|[-*+][ \t]|\d{1,9}[.)][ \t]|<|\||\[[^\]]+\]:)|(?: {4}|\t))"
)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_INLINE = (
    (re.compile(r"!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])"), ""),  # images
    (re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])"), r"\1"),  # links
    (re.compile(r"<((?:https?|mailto):[^>\s]+)>"), r"\1"),  # autolinks
    (re.compile(r"<[^>]*>"), ""),  # inline HTML
    (re.compile(r"`+([^`]+)`+"), r"\1"),  # code spans
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong
    (re.compile(r"\*(?=\S)([^*]+?)(?<=\S)\*"), r"\1"),  # emphasis
    (re.compile(r"(?<!\w)_(?=\S)([^_]+?)(?<=\S)_(?!\w)"), r"\1"),
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|~])"), r"\1"),  # backslash escapes
)
_SPACE = re.compile(r"\s+")
# A first paragraph further in than this is rare; the rest is read only then.
_FIRST_LOOK = 4000


def lead_text(body: str) -> str:
    """The first plain paragraph of a Markdown ``body`` as one line of text, or ""."""
    paragraph = _first_paragraph(body[:_FIRST_LOOK].splitlines())
    if paragraph is None and len(body) > _FIRST_LOOK:
        paragraph = _first_paragraph(body.splitlines())
    if not paragraph:
        return ""
    text = " ".join(line.strip() for line in paragraph)
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    if "&" in text:
        text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()[:LEAD_LIMIT]


def _first_paragraph(lines: list[str]) -> list[str] | None:
    """The lines of the first plain paragraph; None when there is none in ``lines``."""
    paragraph: list[str] = []
    fence = ""
    skipping = False  # inside a block that is not a paragraph, until a blank line
    for line in lines:
        if fence:
            if line.lstrip().startswith(fence):
                fence = ""
            continue
        opened = _FENCE.match(line)
        if opened and not paragraph:
            fence, skipping = opened.group(1), False
            continue
        if not line.strip():
            if paragraph:
                return paragraph
            skipping = False
            continue
        if paragraph:
            if _SETEXT.match(line):  # the paragraph was a heading
                paragraph = []
                continue
            if _ONE_LINE.match(line) or (
                _NOT_PARAGRAPH.match(line) and not line.startswith((" ", "\t"))
            ):
                return paragraph
            paragraph.append(line)
        elif _ONE_LINE.match(line):
            skipping = False
        elif skipping or _NOT_PARAGRAPH.match(line):
            skipping = True
        else:
            paragraph.append(line)
    return paragraph or None

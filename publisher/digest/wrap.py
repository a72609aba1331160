"""HTML lines refilled up to a length, changing nothing a reader or a browser sees.

A body sent as ``Content-Transfer-Encoding: 8bit`` may not have lines longer
than 998 octets (RFC 5322). HTML from templates and CSS inlining has a few
longer ones (a tag with a long inlined style, a preheader), and many short
ones: a tag per line. Mail servers read a message line by line, so fewer
lines is less work for them; and cutting a line anywhere could split a word,
a URL or a tag name.

So :func:`reflow_html` fills lines up to a limit, turning a white-space
character into a line break or a line break into a space, and only where that
is invisible:

* inside a start tag, between attributes (outside quoted values);
* in text, when no element keeps its white space: outside ``<pre>``,
  ``<textarea>``, ``<script>``, ``<style>``, ``<title>``, ``<svg>``, ``<math>``,
  comments (Outlook's conditional ones too) and declarations, and only when no
  style in the document asks for ``white-space: pre...`` or ``break-spaces``;
* and only between two ASCII characters: CSS drops a line break between two
  East Asian wide characters (or next to a zero-width space) where it keeps a
  space, so there the two are not the same.

When a line cannot be brought within the limit, :func:`reflow_html` returns
None, and the caller sends that part in base64 instead.

Works on UTF-8 bytes with CRLF line ends: spaces, quotes and angle brackets
are single bytes that never occur inside a multi-byte character.

Pure: no I/O.
"""

from __future__ import annotations

import re

__all__ = ["LIMIT", "longest_line", "reflow_html"]

LIMIT = 998  # octets per line, without the CRLF (RFC 5322 section 2.1.1)

_TOKEN = re.compile(
    rb"<!--.*?(?:-->|\Z)"  # a comment
    rb"|<![^>]*>"  # a declaration (<!DOCTYPE html>) or CDATA
    rb"|<\?[^>]*>"  # a processing instruction
    rb"|<(/?)([A-Za-z][A-Za-z0-9:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>",
    re.S,
)
# Elements whose content keeps its white space, or is not HTML text at all (SVG text
# drops line breaks where it keeps spaces).
_KEEPING = frozenset(
    {
        b"pre",
        b"textarea",
        b"script",
        b"style",
        b"title",
        b"xmp",
        b"listing",
        b"plaintext",
        b"svg",
        b"math",
    }
)
_KEEPING_STYLE = re.compile(rb"white-space\s*:\s*(?:-[a-z]+-)?(?:pre|break-spaces)", re.I)
_SPACE_IN_TAG = re.compile(rb"\"[^\"]*\"|'[^']*'|(\r\n|[ \t])")
_SPACE = re.compile(rb"\r\n|[ \t]")


def longest_line(data: bytes) -> int:
    """The length of the longest CRLF-separated line of ``data``, in octets."""
    return max(map(len, data.split(b"\r\n")))


def _places(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each space, tab or CRLF of ``data`` that may be changed, in order."""
    text_ok = _KEEPING_STYLE.search(data) is None
    found: list[tuple[int, int]] = []
    size = len(data)

    def keep(start: int, end: int) -> None:
        # Between two ASCII characters only (see the module docstring).
        if start > 0 and end < size and data[start - 1] < 0x80 and data[end] < 0x80:
            found.append((start, end))

    pos = 0
    while pos < size:
        token = _TOKEN.search(data, pos)
        end = size if token is None else token.start()
        if text_ok and end > pos:
            for match in _SPACE.finditer(data, pos, end):
                keep(match.start(), match.end())
        if token is None:
            break
        closing, name = token.group(1, 2)
        if name is not None and not closing:
            for match in _SPACE_IN_TAG.finditer(data, token.start(3), token.end(3)):
                if match.group(1):
                    keep(match.start(1), match.end(1))
            if name.lower() in _KEEPING:
                # Skip to the matching end tag: nothing inside may change.
                close = re.compile(rb"</" + re.escape(name) + rb"[\s/>]", re.I).search(
                    data, token.end()
                )
                pos = size if close is None else close.start()
                continue
        pos = token.end()
    return found


def reflow_html(data: bytes, limit: int = LIMIT, *, join: bool = True) -> bytes | None:
    """``data`` (UTF-8, CRLF line ends) with lines filled up to ``limit`` octets.

    Lines are joined where a line break may become a space (``join``), and
    broken where a space may become a line break, so that each line is as
    long as it may be without passing ``limit``; line breaks that may not
    change stay. None when some line cannot be brought within ``limit``.
    """
    if not join and longest_line(data) <= limit:
        return data
    out: list[bytes] = []
    line = 0  # octets on the output line so far
    pos = 0
    pending = b""  # the white space before the next stretch, not yet written
    places = [p for p in _places(data) if join or data[p[0]] != 0x0D]
    for start, end in [*places, (len(data), len(data))]:
        stretch = data[pos:start]
        first = stretch.find(b"\r\n")
        head = len(stretch) if first < 0 else first
        if pending:
            # A line break, or one space: a line break read as white space is a space.
            space = b" " if pending == b"\r\n" else pending
            if line + len(space) + head <= limit:
                out.append(space)
                line += len(space)
            else:
                out.append(b"\r\n")
                line = 0
        out.append(stretch)
        if first < 0:
            line += head
        else:
            if line + head > limit or any(
                len(inner) > limit for inner in stretch[first + 2 :].split(b"\r\n")[:-1]
            ):
                return None
            line = len(stretch) - stretch.rfind(b"\r\n") - 2
        if line > limit:
            return None
        pending = data[start:end]
        pos = end
    return b"".join(out)

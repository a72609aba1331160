"""People's display names, made safe to store and to put in a ``To`` header.

A name comes from anyone who can reach the subscribe form, a CSV file or the
command line, and ends up inside a header of every digest sent to that person.
So a name is cleaned twice with the same function: when it is stored, and
again when a header is built (rows stored before a rule existed are cleaned
too). What cleaning does:

* RFC 2047 encoded words (``=?utf-8?q?...?=``) are decoded first, since a
  mail library decodes them while it parses a header: a name must not carry a
  line break or a control character in disguise;
* every C0 and C1 control character (tab, CR, LF, VT, FF, NEL, ...), DEL and
  the Unicode line and paragraph separators (U+2028, U+2029) become a space,
  as RFC 5322 requires of a generated display name;
* runs of white space become one space, and the ends are trimmed.

Where a person gives a name (:func:`name_problem`), a name with a line break
in it, typed or encoded, is refused rather than cleaned: it is a mistake or
an attempt at header injection, and either way worth saying so.

Pure: no I/O.
"""

from __future__ import annotations

import email.header
import re
from email.errors import HeaderParseError

__all__ = ["MAX_NAME", "clean_name", "name_problem"]

MAX_NAME = 200  # characters, after cleaning

# C0 controls, DEL, C1 controls, and the Unicode line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What str.splitlines() breaks at: a name holding one of these is not one line.
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# Lone surrogates: what Python makes of bytes that are not UTF-8 in argv.
_SURROGATES = re.compile("[\ud800-\udfff]")
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _decode_word(match: re.Match[str]) -> str:
    word = match.group(0)
    try:
        return str(email.header.make_header(email.header.decode_header(word)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return word  # an unknown charset or broken encoding: keep the text as it is


def _decoded(text: str) -> str:
    # Until nothing changes: every decoded word is shorter than the word, so this ends,
    # and no nesting, however deep, hides a line break.
    while "=?" in text:
        decoded = _ENCODED_WORD.sub(_decode_word, text)
        if decoded == text:
            break
        text = decoded
    return text


def name_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as a name at all, or None.

    Refused: text that is not Unicode (bytes that were not UTF-8), a line
    break (also inside an encoded word), and names too long; everything else
    is cleaned by :func:`clean_name`.
    """
    if _SURROGATES.search(text):
        return "is not valid UTF-8"
    if _LINE_BREAKS.search(_decoded(text)):
        return "must be one line"
    if len(clean_name(text)) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    return None


def clean_name(text: str) -> str:
    """``text`` as a one-line display name: encoded words decoded, controls turned to
    spaces, white space collapsed; lone surrogates are dropped."""
    text = _SURROGATES.sub("", _decoded(text))
    return " ".join(_CONTROLS.sub(" ", text).split())

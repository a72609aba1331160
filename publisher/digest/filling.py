"""A digest with holes for each reader's values, and filling them in: plain string work.

:class:`~publisher.digest.render.DigestRenderer` renders each distinct digest
once with markers where a reader's name, address and links go, and cuts it at
them into a :class:`DigestTemplate`; a :class:`Filling` is that template with
one reader's values, and :class:`RenderedDigest` the finished subject, HTML
and text. :class:`Recipient` holds the values a reader's message is made for.

Pure: no file, store or network I/O, no templates rendered. Deciding whether a
reader may be filled in rather than rendered is the renderer's job, not this one's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DigestTemplate", "Filling", "Recipient", "RenderedDigest", "one_line"]


@dataclass(frozen=True, slots=True)
class Recipient:
    """The per-subscriber values of a message."""

    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str
    unsubscribe_token: str


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """A rendered digest, ready to become a message."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True, eq=False)
class DigestTemplate:
    """One distinct digest with holes where each reader's values go.

    Each text is cut at its slots: literals at even indexes, slot names
    (``name``, ``email``, ``unsubscribe``, ``preferences``) at odd ones. The
    HTML takes values escaped as the inlined HTML writes text (see :meth:`Filling.of`),
    the subject and text the values as they are.
    Compared by identity: a message builder may keep work of its own per template.
    """

    subject: tuple[str, ...]
    html: tuple[str, ...]
    text: tuple[str, ...]
    marks: Mapping[str, str]  # slot name -> the unguessable marker it was rendered as
    marker: re.Pattern[str]  # finds the markers; its one group is the slot name

    def marked(self, pieces: tuple[str, ...]) -> str:
        """``pieces`` joined again with a marker in each slot (see :meth:`cut`)."""
        out = list(pieces)
        for i in range(1, len(out), 2):
            out[i] = self.marks[out[i]]
        return "".join(out)

    def cut(self, text: str) -> tuple[str, ...]:
        """A marked text cut at its markers, as the fields are: a transformation of
        :meth:`marked` text that leaves the markers alone can be cut again."""
        return tuple(self.marker.split(text))

    def subject_for(self, filling: Filling) -> str:
        """The subject for one reader."""
        return one_line(_fill(self.subject, filling.values))

    def fill(self, filling: Filling) -> RenderedDigest:
        """The digest for one reader."""
        return RenderedDigest(
            one_line(_fill(self.subject, filling.values)),
            _fill(self.html, filling.html_values),
            _fill(self.text, filling.values),
        )


def _fill(pieces: tuple[str, ...], values: Mapping[str, str]) -> str:
    out = list(pieces)
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)


# What str.splitlines() breaks lines at, with the blanks around it.
_LINE_BREAK = re.compile(r"\s*[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+\s*")


def one_line(subject: str) -> str:
    """A rendered subject on one line: each line break (a post title written as a
    YAML block, say) and the blanks around it become one space, and the ends are trimmed."""
    return _LINE_BREAK.sub(" ", subject).strip()


def _html_text(value: str) -> str:
    """``value`` as text in HTML, escaped as the CSS inliner writes it out.

    Quotes stay as they are: the inliner parses the rendered HTML and writes it
    out again, so a name that Jinja2 wrote as ``O&#39;Brien`` comes out as
    ``O'Brien``. (Each distinct digest is checked with a made-up value before
    it is filled in, so a different writer would only make it slower.)
    """
    return (
        value.replace("&", "&amp;")
        .replace("\u00a0", "&nbsp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


@dataclass(frozen=True)
class Filling:
    """A reader's digest as a template and the values that fill it."""

    template: DigestTemplate
    values: Mapping[str, str]  # slot name -> value, as the subject and text take it
    html_values: Mapping[str, str]  # the same, as the HTML takes it (_html_text)

    @classmethod
    def of(cls, template: DigestTemplate, values: Mapping[str, str]) -> Filling:
        """``template`` filled with ``values``."""
        return cls(template, values, {name: _html_text(value) for name, value in values.items()})

    def rendered(self) -> RenderedDigest:
        """The filled-in subject, HTML and text."""
        return self.template.fill(self)

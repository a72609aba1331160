"""Refilling HTML lines for 8bit mail: lines within the limit, nothing a reader sees changed."""

from __future__ import annotations

import re

import lxml.html
import pytest

from publisher.digest.wrap import LIMIT, longest_line, reflow_html


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def same_but_white_space(a: bytes, b: bytes) -> bool:
    """Equal once every run of white space is one space: only white space was changed."""
    return re.sub(rb"\s+", b" ", a) == re.sub(rb"\s+", b" ", b)


def rendered_text(data: bytes) -> str:
    """What a browser would lay out, white space collapsed as in normal flow."""
    return " ".join(lxml.html.document_fromstring(data.decode("utf-8")).text_content().split())


PAGE = crlf(
    "<!DOCTYPE html>\n<html>\n<head>\n<title>A   title\nkept</title>\n"
    "<style>\n  p { color: red; }\n</style>\n</head>\n<body>\n"
    '<table role="presentation" style="width: 100%; max-width: 600px" class="a b">\n<tr>\n'
    '<td style="padding: 0 16px">\n' + "<p>Some words in a paragraph. " * 60 + "</p>\n"
    "<pre>keep\n  this   as it is</pre>\n<!--[if mso]>\n<table><tr><td>\n<![endif]-->\n"
    "<svg><text>an svg\ntext</text></svg>\n"
    "</td>\n</tr>\n</table>\n</body>\n</html>\n"
)


def test_lines_are_filled_up_to_the_limit_changing_only_white_space() -> None:
    out = reflow_html(PAGE, 200)
    assert out is not None
    assert longest_line(out) <= 200
    assert b"</head> <body> <table" in out  # line breaks between tags became spaces
    assert same_but_white_space(out, PAGE)
    assert rendered_text(out) == rendered_text(PAGE)


def test_what_keeps_its_white_space_is_left_alone() -> None:
    out = reflow_html(PAGE, 200)
    assert out is not None
    for kept in (
        b"<title>A   title\r\nkept</title>",
        b"<style>\r\n  p { color: red; }\r\n</style>",
        b"<pre>keep\r\n  this   as it is</pre>",
        b"<!--[if mso]>\r\n<table><tr><td>\r\n<![endif]-->",
        b"<svg><text>an svg\r\ntext</text></svg>",
        b'style="width: 100%; max-width: 600px"',  # quoted values
    ):
        assert kept in out


def test_a_long_tag_breaks_between_attributes() -> None:
    tag = '<a href="https://example.com/x" ' + " ".join(f'data-{i}="v {i}"' for i in range(80))
    out = reflow_html(crlf(tag + ">link</a>"), 120)
    assert out is not None and longest_line(out) <= 120
    assert same_but_white_space(out, crlf(tag + ">link</a>"))
    assert b'"v\r\n' not in out  # never inside a quoted value


def test_no_line_break_where_css_would_not_read_it_as_a_space() -> None:
    # CSS drops a line break between two East Asian wide characters, but keeps a space.
    japanese = crlf("<p>" + "日本語 " * 200 + "</p>")
    assert reflow_html(japanese, 100) is None
    mixed = crlf("<p>" + "日本語 and more " * 100 + "</p>")
    out = reflow_html(mixed, 100)
    assert out is not None and longest_line(out) <= 100
    assert out.count(b"and\r\nmore") > 10  # only between the English words
    assert same_but_white_space(out, mixed)


def test_a_style_that_keeps_white_space_stops_every_change_in_text() -> None:
    page = crlf('<div style="white-space: pre-wrap">' + "a b " * 400 + "</div>")
    assert reflow_html(page, 200) is None
    prefixed = crlf("<style>.x { white-space:-moz-pre-wrap }</style><div>" + "a b " * 400)
    assert reflow_html(prefixed, 200) is None
    fine = crlf("<div>" + "a b " * 400 + "</div>")
    assert reflow_html(fine, 200) is not None


def test_short_enough_html_without_joining_comes_back_as_it_is() -> None:
    page = crlf("<p>one</p>\n<p>two</p>\n")
    assert reflow_html(page, join=False) is page
    joined = reflow_html(page)
    assert joined == b"<p>one</p> <p>two</p>\r\n"


@pytest.mark.parametrize("limit", [LIMIT, 800, 80])
def test_an_unbreakable_run_longer_than_the_limit_is_refused(limit: int) -> None:
    assert reflow_html(crlf("<p>" + "x" * (limit + 1) + "</p>"), limit) is None

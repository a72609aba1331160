"""Post HTML: safe, self-contained, with an excerpt that reads well in Japanese too."""

from __future__ import annotations

import pytest

from publisher.config import FeedsConfig
from publisher.site.markup import absolute_url, cut_text, html_to_text, reading_time, render
from publisher.site.posts import read_body
from tests.conftest import SEED

BASE = "https://example.com/blog/2025/01/02/post.html"


def test_script_iframes_handlers_and_javascript_urls_never_survive() -> None:
    body = (
        "Text <script>alert(1)</script> <iframe src='https://evil.example'></iframe>\n"
        "<img src=x onerror=alert(1)> <a href='javascript:alert(1)' onclick='x()'>link</a>\n"
        "<svg onload=alert(1)></svg> [md link](javascript:alert(2)) <style>body{}</style>\n"
    )
    html = render(body, BASE).html
    for bad in (
        "<script",
        "alert",
        "<iframe",
        "onerror",
        "onclick",
        "javascript:",
        "<svg",
        "<style",
    ):
        assert bad not in html
    assert "link" in html


def test_relative_urls_become_absolute_against_the_posts_url() -> None:
    html = render(
        "[a](/about/) [b](../other.html) [c](#part) [d](https://x.example/y) "
        "![i](img/p.png) [m](mailto:me@example.com)",
        BASE,
    ).html
    assert 'href="https://example.com/about/"' in html
    assert 'href="https://example.com/blog/2025/01/other.html"' in html
    assert 'href="https://example.com/blog/2025/01/02/post.html#part"' in html
    assert 'href="https://x.example/y"' in html
    assert 'src="https://example.com/blog/2025/01/02/img/p.png"' in html
    assert 'href="mailto:me@example.com"' in html


def test_summary_is_the_first_paragraph_as_text_unless_the_writer_gave_one() -> None:
    body = "# Heading\n\nFirst *para* with `code`.\n\nSecond para.\n"
    assert render(body, BASE).summary == "First para with code."
    assert render(body, BASE, excerpt="Mine.").summary == "Mine."


def test_forbidden_xml_characters_in_a_body_are_removed_and_reported() -> None:
    result = render("Bell\x07 and NUL\x00 here", BASE)
    assert "\x07" not in result.html and "\x00" not in result.html
    assert result.had_illegal_chars


def test_japanese_is_cut_at_the_end_of_a_sentence() -> None:
    text = "マイクロソフトとアマゾンは投資競争を展開しています。" * 3 + "両社は巨額を投じています"
    cut = cut_text(text, 60)
    assert cut == "マイクロソフトとアマゾンは投資競争を展開しています。" * 2
    assert len(cut) <= 60


def test_text_without_sentence_ends_or_spaces_is_cut_at_a_character() -> None:
    text = "あ" * 300
    assert cut_text(text, 100) == "あ" * 99 + "…"


def test_english_is_cut_at_a_word() -> None:
    text = "word " * 100
    cut = cut_text(text, 52)
    assert cut.endswith("word…") and len(cut) <= 52


def test_a_cut_never_separates_a_letter_from_its_combining_mark() -> None:
    text = "e\u0301" * 100  # é written as e + combining acute accent
    cut = cut_text(text, 51)
    assert cut.endswith("\u0301…")


def test_short_text_is_left_alone() -> None:
    assert cut_text("短い。", 200) == "短い。"
    assert html_to_text("<p>a<code>b</code></p><p>c</p>") == "ab c"


def test_the_first_image_of_the_body_is_kept_absolute() -> None:
    assert render("No image here.", BASE).image == ""
    body = "Text.\n\n![a](img/one.png) ![b](/two.png)\n\n<img src='three.png'>\n"
    assert render(body, BASE).image == "https://example.com/blog/2025/01/02/img/one.png"
    # An image whose URL the sanitizer dropped is skipped, query strings are unescaped.
    body = "<img src='javascript:alert(1)'> ![q](/p.png?a=1&b=2)"
    assert render(body, BASE).image == "https://example.com/p.png?a=1&b=2"


def test_an_image_url_is_made_absolute_as_the_sanitizer_makes_the_bodys() -> None:
    base = "https://example.com/ai%E6%8A%80/2025/09/07/post.html"
    for url in (
        "img/p.png",
        "/img/p.png",
        "../x.png",
        "../../../../../x.png",
        "//cdn.example/x.png",
        "my photo.png",
        "写真.png",
        "/a%20b.png",
        'a"b.png',
        "https://x.example/q.png?x=1#f",
        "?v=2",
    ):
        body = render(f"![a](<{url}>)", base)
        assert body.image == absolute_url(url, base), body.html


@pytest.mark.parametrize(
    ("body", "words", "cjk"),
    [
        ("Hello world, this is *bold* text.", 6, 0),
        ("# Title\n\n- one\n- two\n\n`code`, and [a link](/x).", 7, 0),
        ("マイクロソフトとアマゾン。", 0, 13),
        ("AIとクラウド、Microsoftの戦略を読み解く", 2, 14),
        ("한국어 텍스트", 0, 6),
        ("中文，简体。", 0, 6),
        ("Ünïcödé wörds ça va", 4, 0),
        ("（全角）ｶﾀｶﾅ and ＡＢＣ", 1, 11),
        ("Tom &amp; Jerry &lt;3", 4, 0),
    ],
)
def test_words_and_cjk_characters_are_counted_apart(body: str, words: int, cjk: int) -> None:
    result = render(body, BASE)
    assert (result.words, result.cjk_chars) == (words, cjk)


def test_reading_time_counts_words_and_characters_at_their_own_rates() -> None:
    feeds = FeedsConfig()
    assert reading_time(render("word " * 200, BASE), feeds) == 1  # exactly 1 minute
    assert reading_time(render("word " * 201, BASE), feeds) == 2  # rounded up
    assert reading_time(render("あ" * 1000, BASE), feeds) == 2
    assert reading_time(render("word " * 100 + "あ" * 250, BASE), feeds) == 1
    assert reading_time(render("", BASE), feeds) == 1  # at least a minute
    assert reading_time(render("word " * 100, BASE), feeds, given=9) == 9
    slow = FeedsConfig(reading_words_per_minute=50, reading_chars_per_minute=100)
    assert reading_time(render("word " * 100 + "あ" * 250, BASE), slow) == 5


def test_the_japanese_seed_post_reads_in_six_minutes() -> None:
    body = render(read_body(SEED.read_bytes()), BASE)
    assert (body.words, body.cjk_chars) == (157, 2110)
    assert reading_time(body, FeedsConfig()) == 6  # 0.8 + 4.2 minutes, rounded up

"""Post HTML: safe, self-contained, with an excerpt that reads well in Japanese too."""

from __future__ import annotations

from publisher.site.markup import cut_text, html_to_text, render

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

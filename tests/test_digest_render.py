"""Digest rendering: the templates, what a reader sees in the HTML and text parts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest

from publisher.build import load_site
from publisher.config import Config
from publisher.digest.period import Period, period_at
from publisher.digest.render import DigestRenderer, Recipient, post_views, recipient_for
from publisher.digest.select import Selection, group_posts
from publisher.errors import ConfigError
from tests.conftest import Site

NOW = datetime(2025, 9, 10, tzinfo=UTC)  # the Wednesday after the seed post
SECRET = b"test secret"


def setup(site: Site) -> tuple[Config, Period, Selection, DigestRenderer]:
    config = site.config()
    period = period_at(config, NOW)
    assert period is not None
    published = load_site(config, NOW)[0].published
    selection = group_posts(published, ())
    views = post_views(config, published)
    renderer = DigestRenderer(
        config, period, views, web_url=f"{config.site.url}/digests/{period.key}.html"
    )
    return config, period, selection, renderer


def reader(config: Config, sid: int = 7, name: str = "山田 太郎") -> Recipient:
    return recipient_for(config, sid, f"reader{sid}@example.net", name, SECRET)


def test_japanese_seed_post_renders_in_both_parts(seed_site: Site) -> None:
    config, period, selection, renderer = setup(seed_site)
    digest = renderer.render(selection, reader(config))
    title = "MSとAWS、クラウドAI投資競争の最前線"
    assert period.key == "2025-W37"
    # Dates in Japanese, in Tokyo time; the heading is the post's category.
    for part in (digest.html, digest.text):
        assert title in part
        assert "AI技術" in part
        assert "2025/09/07" in part
        assert "2025年9月8日" in part
        assert "ALLFORCES編集部" in part
        assert "Microsoft, Amazon in cloud AIについて詳細に分析します。" in part
        assert "山田 太郎 様" in part
        assert "https://example.com/ai%E6%8A%80%E8%A1%93/2025/09/07/ms-aws.html" in part
    assert digest.subject == "Test Site: 新着記事 1 件 · 2025年9月8日"
    page = lxml.html.fromstring(digest.html)
    assert page.get("lang") == "ja"


def test_html_is_an_email_layout(seed_site: Site) -> None:
    config, period, selection, renderer = setup(seed_site)
    html = renderer.render(selection, reader(config)).html
    page = lxml.html.fromstring(html)
    head = page.find("head")
    assert head is not None
    metas = {m.get("name"): m.get("content") for m in head.iter("meta") if m.get("name")}
    assert metas["color-scheme"] == "light dark"
    assert "width=device-width" in metas["viewport"]
    # Layout by tables; CSS inlined into style attributes.
    assert page.xpath("//table[@role='presentation']")
    title_link = page.xpath("//h2//a")[0]
    assert "font-size" in page.xpath("//h2")[0].get("style", "")
    assert "color" in title_link.get("style", "")
    # Only what cannot be inlined stays in <style>: small screens and dark mode.
    styles = " ".join(s.text or "" for s in page.iter("style"))
    assert "prefers-color-scheme: dark" in styles
    assert "max-width: 620px" in styles
    assert ".post-excerpt {" not in styles.split("@media")[0]
    # Outlook's conditional comments survive the inlining.
    assert "<!--[if mso]>" in html and "<![endif]-->" in html
    # The charset comes before the style block, within the first kilobyte.
    assert html.index('<meta charset="utf-8">') < 1024
    # A hidden preheader opens the body with the post titles.
    preheader = page.xpath("//body/div")[0]
    assert "display: none" in preheader.get("style", "")
    assert preheader.text_content().startswith("MSとAWS")
    # Every link is absolute; the footer links carry signed tokens.
    hrefs = [a.get("href") for a in page.iter("a")]
    assert hrefs and all(h.startswith("https://") for h in hrefs)
    assert f"https://example.com/digests/{period.key}.html" in hrefs
    assert any(h.startswith("https://example.com/unsubscribe/v1.7.") for h in hrefs)
    assert any(h.startswith("https://example.com/preferences/v1.7.") for h in hrefs)


def test_text_part_carries_the_links(seed_site: Site) -> None:
    config, period, selection, renderer = setup(seed_site)
    text = renderer.render(selection, reader(config)).text
    assert f"https://example.com/digests/{period.key}.html" in text
    assert "https://example.com/unsubscribe/v1.7." in text
    assert "https://example.com/preferences/v1.7." in text
    assert "<a " not in text and "<td" not in text  # no HTML in the text part


def test_post_text_is_escaped_in_html_and_plain_in_text(site: Site) -> None:
    site.post(
        "2025-09-09-tags.md",
        'title: "Use <script> & <b>tags</b>"\ncategories: [Web]\nauthor: "A & B"',
        "Body with <em>markup</em> & more.\n",
    )
    site.write_config(digest={"subject": "{{ posts[0].title }} & co"})
    config, _period, selection, renderer = setup(site)
    digest = renderer.render(selection, reader(config, name="<Ann>"))
    assert "Use &lt;script&gt; &amp; &lt;b&gt;tags&lt;/b&gt;" in digest.html
    assert "<script>" not in digest.html
    assert "&lt;Ann&gt;" in digest.html
    assert "Use <script> & <b>tags</b>" in digest.text
    assert "<Ann>" in digest.text
    # A subject is a header, not HTML: nothing is escaped in it.
    assert digest.subject == "Use <script> & <b>tags</b> & co"


def test_english_site_dates_and_words(site: Site) -> None:
    site.write_config(site={"language": "en", "timezone": "UTC"})
    site.post("2025-09-09-hello.md", "title: Hello\ncategories: [News]")
    config, _period, selection, renderer = setup(site)
    digest = renderer.render(selection, reader(config, name=""))
    assert "Sep 9, 2025" in digest.text
    assert "1 new post · September 8, 2025" in digest.text
    assert "Unsubscribe" in digest.text
    assert "Hello," not in digest.text  # no greeting without a name


def test_the_same_digest_for_many_readers_is_exactly_what_each_would_get_alone(
    seed_site: Site,
) -> None:
    config, _period, selection, renderer = setup(seed_site)
    people = [reader(config, i, name) for i, name in enumerate(["Ann", "", "B & <C>", "Ann"])]
    together = [renderer.render(selection, p) for p in people]
    for person, digest in zip(people, together, strict=True):
        alone = setup(seed_site)[3].render(selection, person)
        assert digest == alone
        assert person.unsubscribe_url in digest.text
    # One render per distinct digest (with or without a name), filled in for the rest:
    # the built-in templates never need the slow path.
    assert renderer.stats["distinct"] == 2
    assert renderer.stats["direct"] == 0


def test_a_site_template_overrides_the_builtin_and_may_transform_names(seed_site: Site) -> None:
    folder = seed_site.root / "templates"
    folder.mkdir()
    (folder / "digest.txt.j2").write_text(
        "Dear {{ subscriber.name|upper }}: {{ posts|length }} post(s).\n"
        "{% if subscriber.email.endswith('.org') %}Hello, org.\n{% endif %}"
        "{{ links.unsubscribe }}\n",
        "utf-8",
    )
    config, _period, selection, renderer = setup(seed_site)
    one = renderer.render(selection, recipient_for(config, 1, "x@a.net", "ann", SECRET))
    two = renderer.render(selection, recipient_for(config, 2, "y@b.org", "bob", SECRET))
    assert one.text.startswith("Dear ANN: 1 post(s).\nhttps://example.com/unsubscribe/v1.1.")
    assert two.text.startswith("Dear BOB: 1 post(s).\nHello, org.\n")
    assert "v1.2." in two.text
    assert "MSとAWS" in one.html  # the HTML template is still the built-in one


def test_template_mistakes_name_the_file(seed_site: Site) -> None:
    folder = seed_site.root / "templates"
    folder.mkdir()
    (folder / "digest.txt.j2").write_text("line one\n{{ posts|length }\n", "utf-8")
    with pytest.raises(ConfigError, match=r"digest\.txt\.j2: line 2: "):
        setup(seed_site)
    (folder / "digest.txt.j2").write_text("{{ no_such_thing.title }}\n", "utf-8")
    config, _period, selection, renderer = setup(seed_site)
    with pytest.raises(ConfigError, match=r"digest\.txt\.j2: .*'no_such_thing' is undefined"):
        renderer.render(selection, reader(config))


def test_subject_template_mistakes_name_the_key(seed_site: Site) -> None:
    seed_site.write_config(digest={"subject": "{{ site.title "})
    with pytest.raises(ConfigError, match=r"digest\.subject: "):
        setup(seed_site)
    seed_site.write_config(digest={"subject": "{{ nothing }}"})
    config, _period, selection, renderer = setup(seed_site)
    with pytest.raises(ConfigError, match=r"digest\.subject: 'nothing' is undefined"):
        renderer.render(selection, reader(config))


def test_web_copy_has_no_personal_links(seed_site: Site) -> None:
    _config, _period, selection, renderer = setup(seed_site)
    page = renderer.web_copy(selection)
    assert "MSとAWS" in page
    assert "/unsubscribe/" not in page and "/preferences/" not in page
    assert "reader" not in page


def test_preview_links_carry_an_obviously_fake_token(seed_site: Site) -> None:
    config = seed_site.config()
    fake = recipient_for(config, 3, "a@example.net", "", None)
    assert fake.unsubscribe_url == "https://example.com/unsubscribe/PREVIEW-not-a-real-token"


def test_links_use_the_server_base_url(seed_site: Site, tmp_path: Path) -> None:
    seed_site.write_config(server={"base_url": "https://news.example.org/app/"})
    link = recipient_for(seed_site.config(), 5, "a@example.net", "", SECRET).unsubscribe_url
    assert link.startswith("https://news.example.org/app/unsubscribe/v1.5.")

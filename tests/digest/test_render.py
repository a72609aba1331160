"""Digest rendering: the templates, what a reader sees in the HTML and text parts."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest

from publisher.build.pipeline import load_site
from publisher.config import Config
from publisher.digest.filling import Filling, Recipient, RenderedDigest
from publisher.digest.period import Period, period_at
from publisher.digest.render import DigestRenderer, recipient_for
from publisher.digest.select import Selection, group_posts
from publisher.digest.views import post_views
from publisher.errors import ConfigError
from tests.conftest import SEED, Site

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


def test_templates_see_each_posts_reading_time(seed_site: Site) -> None:
    english = " ".join(["word"] * 450) + "\n"  # 2.25 minutes at 200 words a minute
    seed_site.post("2025-09-08-english.md", "title: English\ncategories: [News]", english)
    seed_site.post("2025-09-08-given.md", "title: Given\nreading_time: 11", english)
    seed = SEED.read_text("utf-8").replace("reading_time: 8\n", "")
    (seed_site.posts / "2025-09-06-seed-computed.md").write_text(seed, "utf-8")
    folder = seed_site.root / "templates"
    folder.mkdir()
    (folder / "digest.txt.j2").write_text(
        "{% for post in posts %}{{ post.title }}: {{ post.reading_time }} min\n{% endfor %}",
        "utf-8",
    )
    config, _period, selection, renderer = setup(seed_site)
    lines = set(renderer.render(selection, reader(config)).text.splitlines())
    title = "MSとAWS、クラウドAI投資競争の最前線"
    # The seed's front matter says 8; without it, its 2,110 characters and 157 words
    # read in 6 minutes.
    assert lines == {f"{title}: 8 min", f"{title}: 6 min", "English: 3 min", "Given: 11 min"}
    views = post_views(config, load_site(config, NOW)[0].published)
    assert sorted(v.reading_time for v in views.values()) == [3, 6, 8, 11]


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


# --- the fast path: filling in each reader's values ------------------------------------------


def override(site: Site, name: str, text: str) -> None:
    """Save a site's own template, which replaces the built-in one of that name."""
    folder = site.root / "templates"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, "utf-8")


def slow(renderer: DigestRenderer, selection: Selection, person: Recipient) -> RenderedDigest:
    """The digest rendered in full for ``person``: what the fast path must give."""
    values = {
        "name": person.name,
        "email": person.email,
        "unsubscribe": person.unsubscribe_url,
        "preferences": person.preferences_url,
    }
    return renderer._render(selection, values)


def body_text(html: str) -> str:
    return " ".join(lxml.html.fromstring(html).text_content().split())


VIP_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>{{ subject }}</title></head><body>\n"
    '<p class="status">{% if subscriber.email.endswith("@vip.example") %}VIP{% else %}regular'
    "{% endif %} member {{ subscriber.name }}</p>\n"
    "{% for post in posts %}<p>{{ post.title }}</p>{% endfor %}\n"
    '<a href="{{ links.unsubscribe }}">{{ labels.unsubscribe }}</a>\n</body></html>\n'
)


def test_a_template_that_branches_on_the_address_shows_each_reader_their_branch(
    seed_site: Site,
) -> None:
    override(seed_site, "digest.html.j2", VIP_PAGE)
    config, _period, selection, renderer = setup(seed_site)
    alice = recipient_for(config, 1, "alice@example.com", "Alice", SECRET)
    bob = recipient_for(config, 2, "bob@vip.example", "Bob", SECRET)
    first = renderer.render(selection, alice)
    second = renderer.render(selection, bob)
    assert "regular member Alice" in body_text(first.html)
    assert "VIP member Bob" in body_text(second.html)
    assert "regular" not in body_text(second.html)
    assert bob.unsubscribe_url in second.html
    assert renderer.stats["filled"] == 0  # such templates are rendered for each reader


@pytest.mark.parametrize(
    ("template", "first", "second", "expected"),
    [
        ("Dear {{ subscriber.name|upper }}.\n", "Ann", "bob", "Dear BOB."),
        # The rest keep the placeholder a shared render writes intact, and the first
        # reader gets what the shared render would give: only an analysis of the
        # template can tell that a later reader gets something else.
        (
            "{% if subscriber.name|upper == 'DR BOB' %}Dear Doctor{% else %}Hello{% endif %}"
            " {{ subscriber.name }}.\n",
            "Ann",
            "dr bob",
            "Dear Doctor dr bob.",
        ),
        (
            "{% macro greet(who) %}{% if who.startswith('Dr') %}Dear Doctor{% else %}Hello"
            "{% endif %} {{ who }}{% endmacro %}{{ greet(subscriber.name) }}.\n",
            "Ann",
            "Dr Bob",
            "Dear Doctor Dr Bob.",
        ),
        (
            "{% set first_name = subscriber.name.split(' ')[0] %}Hi {{ first_name }}.\n",
            "Ann",
            "Bob Lee",
            "Hi Bob.",
        ),
        (
            "{% set who = subscriber %}{% if who.name.startswith('Dr') %}Doctor {% endif %}"
            "{{ who.name }}.\n",
            "Ann",
            "Dr Bob",
            "Doctor Dr Bob.",
        ),
        (
            "{% filter replace('Dr ', 'Doctor ') %}Hi {{ subscriber.name }}.{% endfilter %}\n",
            "Ann",
            "Dr Bob",
            "Hi Doctor Bob.",
        ),
        ("Hi {{ '{n!r}'.format(n=subscriber.name) }}.\n", "Ann", "Bob's", 'Hi "Bob\'s".'),
        ("Hi {{ subscriber.name|trim }}.\n", "Ann", "  Bob ", "Hi Bob."),
    ],
    ids=[
        "upper",
        "upper-test",
        "macro",
        "set-alias",
        "set-whole",
        "filter-block",
        "format-conversion",
        "trim",
    ],
)
def test_a_template_that_transforms_a_value_shows_each_reader_their_own(
    seed_site: Site, template: str, first: str, second: str, expected: str
) -> None:
    override(seed_site, "digest.txt.j2", template)
    config, _period, selection, renderer = setup(seed_site)
    one_reader = recipient_for(config, 1, "one@example.net", first, SECRET)
    one = renderer.render(selection, one_reader)
    two = renderer.render(selection, recipient_for(config, 2, "two@example.net", second, SECRET))
    assert one.text == slow(renderer, selection, one_reader).text
    assert two.text == expected + "\n"
    assert renderer.stats["filled"] == 0


def test_the_default_templates_fill_in_exactly_what_rendering_gives(seed_site: Site) -> None:
    config, _period, selection, renderer = setup(seed_site)
    names = ["Ann", "B & <C>", 'Seán O\'Brien "Sean"', "山田 太郎", "a&lt;b", "", "Zoë"]
    people = [reader(config, i, name) for i, name in enumerate(names)]
    people.append(recipient_for(config, 99, "o'brien@example.net", "Pat", SECRET))
    for person in people:
        digest = renderer.render(selection, person)
        assert digest == slow(renderer, selection, person)
        if person.name:
            assert person.name in body_text(digest.html)
            assert person.name in digest.text
    # Quotes in a name are written as they are in the HTML text, as the inliner writes them.
    quoted = renderer.render(selection, people[2]).html
    assert 'Seán O\'Brien "Sean"' in quoted
    # One render per distinct digest (with or without a name); everyone with a plain
    # address is filled in, the address with a quote is rendered in full.
    assert renderer.stats["distinct"] == 2
    assert renderer.stats["filled"] == len(names) + 1  # the last render of people[2] too
    assert renderer.stats["direct"] == 1


def test_a_subject_with_the_name_is_trimmed_for_every_reader(seed_site: Site) -> None:
    seed_site.write_config(digest={"subject": "{{ subscriber.name }} {{ digest.summary }}"})
    config, _period, selection, renderer = setup(seed_site)
    people = [reader(config, 1, "Ann"), reader(config, 2, " Bob "), reader(config, 3, "Cy")]
    for person in people:
        digest = renderer.render(selection, person)
        assert digest == slow(renderer, selection, person)
        title = lxml.html.fromstring(digest.html).findtext(".//title")
        assert title == digest.subject
        assert digest.subject.startswith(person.name.strip() + " ")
    assert renderer.stats["filled"] == 3  # " Bob " is cleaned to "Bob" with the To header


def test_a_name_in_an_attribute_is_written_as_the_html_writes_it(seed_site: Site) -> None:
    override(
        seed_site,
        "digest.html.j2",
        '<!DOCTYPE html>\n<html><body><p title="{{ subscriber.name }}">Hi {{ subscriber.name }}'
        "</p></body></html>\n",
    )
    config, _period, selection, renderer = setup(seed_site)
    for i, name in enumerate(["Ann", 'Bob "the" <Builder>', "O'Neil"]):
        person = reader(config, i, name)
        digest = renderer.render(selection, person)
        assert digest == slow(renderer, selection, person)
        paragraph = lxml.html.fromstring(digest.html).find(".//p")
        assert paragraph is not None
        assert paragraph.get("title") == name
        assert paragraph.text_content() == f"Hi {name}"


@pytest.mark.parametrize("templates", ["branching", "default"])
def test_sender_threads_sharing_a_renderer_each_get_their_own_digest(
    seed_site: Site, templates: str
) -> None:
    if templates == "branching":
        override(seed_site, "digest.html.j2", VIP_PAGE)
    config, _period, selection, renderer = setup(seed_site)
    people = [
        recipient_for(
            config,
            i,
            f"reader{i}@{'vip.example' if i % 3 == 0 else 'example.com'}",
            f"Reader {i} & <co>" if i % 2 else f"読者{i}",
            SECRET,
        )
        for i in range(48)
    ]
    start = threading.Barrier(8)

    def work(part: list[Recipient]) -> list[tuple[Recipient, RenderedDigest]]:
        start.wait()
        out = []
        for person in part:
            prepared = renderer.prepare(selection, person)
            out.append((person, prepared.rendered() if isinstance(prepared, Filling) else prepared))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for part in pool.map(work, [people[i::8] for i in range(8)]) for r in part]
    assert len(results) == len(people)
    for person, digest in results:
        assert digest == slow(renderer, selection, person)
        if templates == "branching":
            branch = "VIP" if person.email.endswith("@vip.example") else "regular"
            assert f"{branch} member {person.name}" in body_text(digest.html)
    if templates == "default":
        assert renderer.stats["filled"] == len(people)

"""RFC 5005 archives: walked back from the current feed as an archiving reader would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree

from publisher.build.pipeline import build
from publisher.feeds.archives import ARCHIVE_NS
from publisher.site.lead import lead_text
from tests.conftest import Site

SITE = "https://example.com"
FH_ARCHIVE = f"{{{ARCHIVE_NS}}}archive"


def write_posts(site: Site, count: int, start: int = 0) -> None:
    """``count`` published posts, one a day, each in one or two of five categories."""
    for i in range(start, start + count):
        year, day = 2020 + i // 300, 1 + i % 300
        categories = [f"C{i % 5}"] + ([f"C{(i + 2) % 5}"] if i % 3 == 0 else [])
        site.post(
            f"{year}-{_date(day)}-post-{i}.md",
            f"title: Post {i}\ncategories: {json.dumps(categories)}",
            f"The opening paragraph of post {i}, with *emphasis*.\n\n## Later\n\nMore.\n",
        )


def _date(day: int) -> str:
    month, mday = 1 + (day - 1) // 28, 1 + (day - 1) % 28
    return f"{month:02d}-{mday:02d}"


def local(url: str, site: Site) -> Path:
    assert url.startswith(SITE + "/"), url
    return site.output / url[len(SITE) + 1 :]


def links_of(path: Path) -> dict[str, str]:
    """The feed-level links of an Atom or RSS document, by rel."""
    root = etree.fromstring(path.read_bytes())
    channel = root.find("channel")
    holder = channel if channel is not None else root
    found = {}
    for link in holder.findall("{http://www.w3.org/2005/Atom}link"):
        found.setdefault(link.get("rel"), link.get("href"))
    return found


def is_archive(path: Path) -> bool:
    root = etree.fromstring(path.read_bytes())
    channel = root.find("channel")
    return (channel if channel is not None else root).find(FH_ARCHIVE) is not None


def walk_xml(site: Site, current: Path) -> tuple[list[str], list[Path]]:
    """Every entry id met walking prev-archive from ``current``, and the pages visited."""
    parsed = feedparser.parse(current.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    ids = [e.id for e in parsed.entries]
    pages: list[Path] = []
    link = links_of(current).get("prev-archive")
    while link is not None:
        page = local(link, site)
        parsed = feedparser.parse(page.read_bytes())
        assert not parsed.bozo, f"{page}: {parsed.get('bozo_exception')}"
        pages.append(page)
        ids.extend(e.id for e in parsed.entries)
        links = links_of(page)
        assert is_archive(page), f"{page} is reached by prev-archive, so it is an archive"
        assert links["current"] == f"{SITE}/{current.relative_to(site.output).as_posix()}"
        assert links["self"] == link
        link = links.get("prev-archive")
    return ids, pages


def walk_json(site: Site, current: Path) -> list[str]:
    document = json.loads(current.read_text("utf-8"))
    ids = [item["id"] for item in document["items"]]
    while "next_url" in document:
        document = json.loads(local(document["next_url"], site).read_text("utf-8"))
        assert document["_publisher"]["archive"] is True
        ids.extend(item["id"] for item in document["items"])
    return ids


def archive_ids(site: Site, folder: Path) -> list[str]:
    """Every entry id of every archive page in ``folder`` (full ones and the open one)."""
    ids = []
    for page in sorted(folder.glob("*.xml")):
        ids.extend(e.id for e in feedparser.parse(page.read_bytes()).entries)
    return ids


def post_ids(site: Site, numbers: range, category: str | None = None) -> set[str]:
    ids = set()
    for i in numbers:
        categories = {f"C{i % 5}"} | ({f"C{(i + 2) % 5}"} if i % 3 == 0 else set())
        if category is None or category in categories:
            year, day = 2020 + i // 300, 1 + i % 300
            date = f"{year}-{_date(day)}"
            ids.add(f"tag:example.com,{date}:{date}-post-{i}")
    return ids


@pytest.fixture(scope="module")
def big_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A site of 1,234 posts in five categories, built once with archives on (the default)."""
    site = Site.create(
        tmp_path_factory.mktemp("archives") / "site",
        {"title": "Archive Site", "url": SITE, "language": "en", "timezone": "UTC"},
    )
    write_posts(site, 1234)
    run = site.run("build")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    return site


@pytest.mark.parametrize("fmt", ["atom", "rss"])
def test_walking_back_from_the_current_feed_reaches_every_post_once(
    big_site: Site, fmt: str
) -> None:
    site = big_site
    current = site.output / f"{fmt}.xml"
    ids, pages = walk_xml(site, current)
    # 1,234 posts: 24 full pages of 50, and 34 since, all of them in the current feed.
    assert len(pages) == 24
    assert len(feedparser.parse(current.read_bytes()).entries) == 34
    assert len(ids) == len(set(ids)) == 1234
    assert set(ids) == post_ids(site, range(1234))
    # No post is in two archive pages, the open one (page 25) included.
    in_pages = archive_ids(site, site.output / "archive" / fmt)
    assert len(in_pages) == len(set(in_pages)) == 1234
    assert not is_archive(site.output / "archive" / fmt / "25.xml")
    assert links_of(site.output / "archive" / fmt / "24.xml")["next-archive"].endswith("/25.xml")
    # Pages are counted from the oldest post: page 1 holds posts 0 to 49.
    assert {
        e.id
        for e in feedparser.parse((site.output / "archive" / fmt / "1.xml").read_bytes()).entries
    } == post_ids(site, range(50))


def test_json_feed_pages_with_next_url_reach_every_post_once(big_site: Site) -> None:
    ids = walk_json(big_site, big_site.output / "feed.json")
    assert len(ids) == len(set(ids)) == 1234
    assert set(ids) == post_ids(big_site, range(1234))


def test_each_category_has_its_own_complete_archive(big_site: Site) -> None:
    site = big_site
    for n in range(5):
        folder = site.output / "categories" / f"c{n}"
        ids, pages = walk_xml(site, folder / "atom.xml")
        assert len(ids) == len(set(ids))
        assert set(ids) == post_ids(site, range(1234), f"C{n}")
        assert pages and all(p.parent == folder / "archive" / "atom" for p in pages)
        assert set(walk_json(site, folder / "feed.json")) == set(ids)


def test_archive_entries_carry_title_link_dates_categories_and_the_opening_paragraph(
    big_site: Site,
) -> None:
    page = feedparser.parse((big_site.output / "archive" / "atom" / "1.xml").read_bytes())
    entry = next(e for e in page.entries if e.title == "Post 3")
    assert entry.link == f"{SITE}/c3/c0/2020/01/04/post-3.html"  # its categories lead
    assert entry.summary == "The opening paragraph of post 3, with emphasis."
    assert entry.published.startswith("2020-01-04") and entry.updated
    assert [t.term for t in entry.tags] == ["C3", "C0"]
    assert "content" not in entry  # full content only with feeds.archive_content: full


def _written_pages(result: Any) -> set[str]:
    return {w for w in result.written if "/archive/" in f"/{w}"}


def test_a_new_post_rewrites_the_current_feeds_and_only_the_open_pages(site: Site) -> None:
    site.write_config(feeds={"archive_page_size": 10, "formats": ["atom"]})
    write_posts(site, 47)
    config = site.config()
    build(config)
    closed = {p: p.read_bytes() for p in (site.output / "archive" / "atom").glob("*.xml")}
    write_posts(site, 1, start=47)  # post 47: category C2 only, its 14th post
    result = build(config)
    assert _written_pages(result) == {"archive/atom/5.xml", "categories/c2/archive/atom/2.xml"}
    assert "atom.xml" in result.written and "categories/c2/atom.xml" in result.written
    for path, data in closed.items():
        if path.name != "5.xml":
            assert path.read_bytes() == data, f"{path} changed"


def test_a_page_that_fills_becomes_an_archive_and_a_new_open_page_follows(site: Site) -> None:
    site.write_config(feeds={"archive_page_size": 10, "max_items": 3, "formats": ["atom"]})
    write_posts(site, 19)
    config = site.config()
    build(config)
    pages = site.output / "archive" / "atom"
    page1 = (pages / "1.xml").read_bytes()
    assert not is_archive(pages / "2.xml")
    assert len(feedparser.parse((site.output / "atom.xml").read_bytes()).entries) == 9
    write_posts(site, 1, start=19)
    result = build(config)
    assert is_archive(pages / "2.xml") and not is_archive(pages / "3.xml")
    assert feedparser.parse((pages / "3.xml").read_bytes()).entries == []
    assert (pages / "1.xml").read_bytes() == page1  # it already linked to page 2
    assert "archive/atom/1.xml" not in result.written
    # With no post since the newest full page, the current feed holds max_items.
    current = feedparser.parse((site.output / "atom.xml").read_bytes())
    assert [e.title for e in current.entries] == ["Post 19", "Post 18", "Post 17"]
    assert links_of(site.output / "atom.xml")["prev-archive"] == f"{SITE}/archive/atom/2.xml"
    ids, _ = walk_xml(site, site.output / "atom.xml")
    assert set(ids) == post_ids(site, range(20))
    assert len(ids) == 23  # the current feed's three are in page 2 as well, as they may be


def test_current_feed_posts_beyond_max_items_are_shown_as_the_open_page_shows_them(
    site: Site,
) -> None:
    # 17 posts, pages of 10: the current feed holds the 7 since page 1, the newest
    # 3 (max_items) in full and the 4 older ones in summary only, unrendered.
    site.write_config(feeds={"archive_page_size": 10, "max_items": 3})
    write_posts(site, 17)
    result = build(site.config())
    atom = feedparser.parse((site.output / "atom.xml").read_bytes())
    assert [e.title for e in atom.entries] == [f"Post {i}" for i in range(16, 9, -1)]
    assert ["content" in e for e in atom.entries] == [True] * 3 + [False] * 4
    assert "<em>emphasis</em>" in atom.entries[0].content[0].value
    older = atom.entries[3]
    assert older.summary == "The opening paragraph of post 13, with emphasis."
    rss = feedparser.parse((site.output / "rss.xml").read_bytes())
    assert ["content" in e for e in rss.entries] == [True] * 3 + [False] * 4
    assert rss.entries[6].description == "The opening paragraph of post 10, with emphasis."
    items = json.loads((site.output / "feed.json").read_text("utf-8"))["items"]
    assert ["content_html" in i for i in items] == [True] * 3 + [False] * 4
    assert items[4]["content_text"] == "The opening paragraph of post 12, with emphasis."
    # The open page shows those four the same way.
    page = feedparser.parse((site.output / "archive" / "atom" / "2.xml").read_bytes())
    assert {e.title: e.summary for e in page.entries}["Post 13"] == older.summary
    # Only the posts some feed shows in full were rendered: each feed's newest three.
    in_categories: dict[int, list[int]] = {}
    for i in range(17):
        for c in [i % 5] + ([(i + 2) % 5] if i % 3 == 0 else []):
            in_categories.setdefault(c, []).append(i)
    shown_in_full = {16, 15, 14}.union(*(sorted(v)[-3:] for v in in_categories.values()))
    assert result.rendered == len(shown_in_full) < 17


def test_editing_an_old_post_rewrites_only_the_pages_that_hold_it(site: Site) -> None:
    site.write_config(feeds={"archive_page_size": 10, "formats": ["atom", "json"]})
    write_posts(site, 95)
    config = site.config()
    build(config)
    # Post 12 (categories C2 and C4) sits in site page 2 and in page 1 of each;
    # a new title moves no post.
    site.post(
        f"2020-{_date(13)}-post-12.md",
        "title: Post 12, retitled\ncategories: [C2, C4]",
        "Edited.\n",
    )
    result = build(config)
    assert not result.read_all  # the last plan held: only the edited post was read
    assert sorted(result.written) == [
        "archive/atom/2.xml",
        "archive/json/2.json",
        "categories/c2/archive/atom/1.xml",
        "categories/c2/archive/json/1.json",
        "categories/c4/archive/atom/1.xml",
        "categories/c4/archive/json/1.json",
    ]
    titles = [
        e.title for e in feedparser.parse((site.output / "archive/atom/2.xml").read_bytes()).entries
    ]
    assert "Post 12, retitled" in titles
    assert "Post 12, retitled" in (site.output / "categories/c2/archive/json/1.json").read_text(
        "utf-8"
    )


def test_a_warm_build_restores_a_deleted_page_that_holds_no_edited_post(site: Site) -> None:
    # The last plan holds, so untouched pages keep their recorded fingerprints
    # unhashed; a page gone from the disk must still be written again.
    site.write_config(feeds={"archive_page_size": 10, "formats": ["atom"]})
    write_posts(site, 35)
    config = site.config()
    build(config)
    page1 = site.output / "archive" / "atom" / "1.xml"
    expected = page1.read_bytes()
    page1.unlink()
    site.post(
        f"2020-{_date(31)}-post-30.md", "title: Post 30, retitled\ncategories: [C0, C2]", "x\n"
    )
    result = build(config)
    assert not result.read_all
    assert "archive/atom/1.xml" in result.written and page1.read_bytes() == expected
    assert "archive/atom/4.xml" in result.written  # the open page, which holds post 30
    assert "archive/atom/2.xml" not in result.written


def test_with_archives_off_there_are_no_pages_and_no_archive_links(site: Site) -> None:
    site.write_config(feeds={"archive": False, "max_items": 5})
    write_posts(site, 60)
    assert site.run("build").returncode == 0
    assert not list(site.output.rglob("archive"))
    assert "prev-archive" not in links_of(site.output / "atom.xml")
    assert "next_url" not in json.loads((site.output / "feed.json").read_text("utf-8"))
    assert len(feedparser.parse((site.output / "atom.xml").read_bytes()).entries) == 5


def test_full_content_archives_carry_the_rendered_body(site: Site) -> None:
    site.write_config(feeds={"archive_page_size": 5, "archive_content": "full"})
    write_posts(site, 12)
    assert site.run("build").returncode == 0
    entry = feedparser.parse((site.output / "archive/rss/1.xml").read_bytes()).entries[0]
    assert "<h2>Later</h2>" in entry.content[0].value
    item = json.loads((site.output / "archive/json/1.json").read_text("utf-8"))["items"][0]
    assert "<em>emphasis</em>" in item["content_html"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"archive_page_size": 0}, "feeds.archive_page_size"),
        ({"archive_content": "some"}, "feeds.archive_content"),
        ({"archive": "sometimes"}, "feeds.archive"),
    ],
)
def test_bad_archive_settings_are_one_config_line(
    site: Site, settings: dict[str, Any], message: str
) -> None:
    site.write_config(feeds=settings)
    site.post("2025-01-01-a.md", "title: A")
    run = site.run("build")
    assert run.returncode == 2
    (line,) = run.stderr.splitlines()
    assert message in line and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("body", "lead"),
    [
        (
            "First *para* with a [link](x.html) and `code`.\n\nSecond.\n",
            "First para with a link and code.",
        ),
        (
            "# Title\n\n```\ncode\n```\n\n- a list\n\nThe **real** one\ngoes on.\n",
            "The real one goes on.",
        ),
        ("> a quote\n\n<div>raw</div>\n\nTom &amp; Jerry <b>bold</b>\n", "Tom & Jerry bold"),
        ("![only an image](a.png)\n", ""),
        ("日本語の段落です。\n続きの行。\n\n次。\n", "日本語の段落です。 続きの行。"),
        ("", ""),
    ],
)
def test_the_lead_is_the_first_plain_paragraph_as_text(body: str, lead: str) -> None:
    assert lead_text(body) == lead


def test_json_archive_items_are_exactly_what_json_dumps_writes(site: Site) -> None:
    # Items are written out by hand for speed: each must be json.dumps's own form.
    site.write_config(feeds={"archive_page_size": 2, "formats": ["json"]})
    site.post(
        "2024-01-01-a.md",
        'title: "Quotes \\" and \\\\ back\\tslash, 日本語 \\u2028 line"\n'
        'categories: [C]\ntags: [t, C, "q\\"\\tx\\u2028y"]\nauthor: Ann\nimage: /img/a.png\n'
        "enclosure: {url: /a.mp3, length: 12345, type: audio/mpeg}\nreading_time: 4",
        "Body with <b>html</b> & ampersands.\n",
    )
    site.post(
        "2024-01-02-b.md", "title: B\nenclosure: {url: /b.pdf, type: application/pdf}", "B.\n"
    )
    for i in range(3):
        site.post(f"2024-01-1{i}-c{i}.md", f"title: C{i}\nexcerpt: 'Ex {i}'", "x\n")
    assert site.run("build").returncode == 0
    lines = [
        line.strip().rstrip(",")
        for page in sorted((site.output / "archive" / "json").glob("*.json"))
        for line in page.read_text("utf-8").split("\n")  # not splitlines(): U+2028 stays raw
        if line.startswith('    {"id"')
    ]
    assert len(lines) == 5  # two full pages and the open page
    for line in lines:
        assert line == json.dumps(json.loads(line), ensure_ascii=False)
    first = json.loads(next(line for line in lines if '"Quotes' in line))
    assert first["title"] == 'Quotes " and \\ back slash, 日本語 line'  # plain text
    assert first["attachments"] == [
        {"url": f"{SITE}/a.mp3", "mime_type": "audio/mpeg", "size_in_bytes": 12345}
    ]
    assert first["tags"] == ["C", "t", 'q"\tx\u2028y'] and first["_publisher"] == {
        "reading_time": 4
    }
    assert first["image"] == f"{SITE}/img/a.png" and "summary" not in first


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "UTC", "America/St_Johns", "Asia/Kolkata"])
def test_rss_dates_are_written_as_email_utils_writes_them(zone: str) -> None:
    from datetime import datetime, timedelta
    from email.utils import format_datetime
    from zoneinfo import ZoneInfo

    from publisher.feeds.archives import _rfc822

    start = datetime(1850, 1, 1, tzinfo=ZoneInfo(zone))  # historical offsets of seconds too
    for step in range(0, 200 * 365 * 24, 997):
        moment = (start + timedelta(hours=step, seconds=step % 61)).astimezone(ZoneInfo(zone))
        assert _rfc822(moment) == format_datetime(moment)

"""End to end: the real `publisher build` on a site, read back as a feed reader would."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import feedparser
import pytest
import yaml
from lxml import etree

from publisher.build.cache import BuildCache
from publisher.build.pipeline import build, settings_key
from publisher.errors import PublisherError
from tests.conftest import REPO, Site

FEEDS = ("atom.xml", "rss.xml", "feed.json")


def parse_feed(path: Path) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, f"{path}: {parsed.get('bozo_exception')}"
    etree.fromstring(path.read_bytes())  # well-formed XML, or this raises
    return parsed


def test_the_seed_post_reaches_every_feed_valid_and_in_the_sites_time_zone(
    seed_site: Site,
) -> None:
    run = seed_site.run("build")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    out = seed_site.output
    category = out / "categories" / "ai技術"
    for folder in (out, category):
        for fmt in ("atom.xml", "rss.xml"):
            feed = parse_feed(folder / fmt)
            self_links = [link.href for link in feed.feed.links if link.rel == "self"]
            expected = "https://example.com/" + (
                "" if folder == out else "categories/ai%E6%8A%80%E8%A1%93/"
            )
            assert self_links == [expected + fmt]
            (entry,) = feed.entries
            assert entry.title == "MSとAWS、クラウドAI投資競争の最前線"
            assert entry.link == ("https://example.com/ai%E6%8A%80%E8%A1%93/2025/09/07/ms-aws.html")
            assert entry.id == "tag:example.com,2025-09-07:2025-09-07-ms-aws"
            assert entry.author == "ALLFORCES編集部"
            assert [t.term for t in entry.tags] == ["AI技術", "AI", "最新ニュース", "技術動向"]
            # 08:26:39 UTC is 17:26:39 in Asia/Tokyo, the site's time zone.
            date = entry.published
            assert "17:26:39" in date and ("+09:00" in date or "+0900" in date)
            html = entry.content[0].value
            assert "<h2>概要</h2>" in html
            assert entry.summary == "Microsoft, Amazon in cloud AIについて詳細に分析します。"
    json_feed = json.loads((category / "feed.json").read_text("utf-8"))
    assert json_feed["version"] == "https://jsonfeed.org/version/1.1"
    assert json_feed["feed_url"] == "https://example.com/categories/ai%E6%8A%80%E8%A1%93/feed.json"
    (item,) = json_feed["items"]
    assert item["date_published"] == "2025-09-07T17:26:39+09:00"
    assert item["tags"] == ["AI技術", "AI", "最新ニュース", "技術動向"]


def test_feeds_are_newest_first_capped_and_stable_across_edits(site: Site) -> None:
    # Without archives the cap is the whole story (with them, see tests/feeds/test_archives.py).
    site.write_config(feeds={"max_items": 3, "archive": False})
    for day in range(1, 6):
        site.post(f"2025-01-0{day}-p{day}.md", f"title: Post {day}\ncategories: [News]")
    assert site.run("build").returncode == 0
    feed = parse_feed(site.output / "atom.xml")
    assert [e.title for e in feed.entries] == ["Post 5", "Post 4", "Post 3"]
    ids = [e.id for e in feed.entries]

    site.post("2025-01-05-p5.md", "title: Post 5, edited\ncategories: [News]", "New text.\n")
    assert site.run("build").returncode == 0
    feed = parse_feed(site.output / "atom.xml")
    assert feed.entries[0].title == "Post 5, edited"
    assert [e.id for e in feed.entries] == ids
    assert len({e.id for e in feed.entries}) == 3


def test_a_bad_post_is_one_line_and_the_others_still_publish(site: Site) -> None:
    site.post("2025-01-01-good.md", "title: Good")
    (site.posts / "2025-01-02-bad.md").write_text(
        "---\ntitle: Bad\ndate: 2025-02-30 10:00\n---\n", "utf-8"
    )
    run = site.run("build")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "posts/2025-01-02-bad.md:3:7: date: cannot read '2025-02-30 10:00' as a date: "
        "day is out of range for month"
    ]
    assert "Traceback" not in run.stderr
    assert [e.title for e in parse_feed(site.output / "rss.xml").entries] == ["Good"]


def test_a_bad_config_exits_2_with_every_problem_and_writes_nothing(site: Site) -> None:
    site.post("2025-01-01-good.md", "title: Good")
    site.write_config(feeds={"max_items": "ten", "formats": ["atom", "xml"]})
    run = site.run("build")
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "config.yaml: feeds.formats: must be a list of atom, rss, json, got ['atom', 'xml']",
        "config.yaml: feeds.max_items: must be a positive integer, got 'ten'",
    ]
    assert not site.output.exists()


def test_check_validates_and_writes_nothing(site: Site) -> None:
    site.post("2025-01-01-good.md", "title: Good")
    (site.posts / "2025-01-02-bad.md").write_text("---\ntitle: [x\n---\n", "utf-8")
    run = site.run("check")
    assert run.returncode == 1
    assert run.stderr.startswith("posts/2025-01-02-bad.md:3:1: front matter: invalid YAML")
    assert not site.output.exists()
    assert not (site.root / ".publisher-cache").exists()


def test_categories_that_slug_alike_get_feeds_of_their_own(site: Site) -> None:
    site.post("2025-01-01-a.md", 'title: A\ncategories: ["C++"]')
    site.post("2025-01-02-b.md", 'title: B\ncategories: ["C#"]')
    assert site.run("build").returncode == 0
    c = parse_feed(site.output / "categories" / "c" / "atom.xml")
    c2 = parse_feed(site.output / "categories" / "c-2" / "atom.xml")
    assert [e.title for e in c.entries] == ["B"]
    assert [e.title for e in c2.entries] == ["A"]


def test_tag_feeds_summary_mode_and_formats(site: Site) -> None:
    site.write_config(feeds={"per_tag": True, "content": "summary", "formats": ["rss"]})
    site.post("2025-01-01-a.md", "title: A\ntags: [deep learning]", "Only *this* text.\n")
    assert site.run("build").returncode == 0
    feed = parse_feed(site.output / "tags" / "deep-learning" / "rss.xml")
    (entry,) = feed.entries
    assert entry.summary == "Only this text."
    assert "content" not in entry
    assert not (site.output / "atom.xml").exists()
    assert not (site.output / "feed.json").exists()


def test_opml_and_index_list_every_feed_with_autodiscovery(seed_site: Site) -> None:
    assert seed_site.run("build").returncode == 0
    opml = etree.fromstring((seed_site.output / "feeds.opml").read_bytes())
    urls = sorted(o.get("xmlUrl") for o in opml.iter("outline"))
    assert urls == [
        "https://example.com/atom.xml",
        "https://example.com/categories/ai%E6%8A%80%E8%A1%93/atom.xml",
        "https://example.com/categories/ai%E6%8A%80%E8%A1%93/rss.xml",
        "https://example.com/rss.xml",
    ]
    page = etree.HTML((seed_site.output / "index.html").read_bytes())
    alternates = {
        link.get("type"): link.get("href")
        for link in page.iter("link")
        if link.get("rel") == "alternate"
    }
    assert alternates == {
        "application/atom+xml": "https://example.com/atom.xml",
        "application/rss+xml": "https://example.com/rss.xml",
        "application/feed+json": "https://example.com/feed.json",
    }


def test_no_script_or_relative_reference_reaches_a_feed(site: Site) -> None:
    site.post(
        "2025-01-01-x.md",
        "title: X",
        "<script>alert(1)</script>[rel](../up.html) <img src=a.png onerror=x()>\n"
        "<a href='javascript:alert(1)'>j</a> <iframe src=//evil></iframe>\n",
    )
    assert site.run("build").returncode == 0
    for name in FEEDS:
        text = (site.output / name).read_text("utf-8")
        for bad in ("<script", "&lt;script", "onerror", "javascript:", "iframe", '"../'):
            assert bad not in text, (name, bad)
    entry = parse_feed(site.output / "atom.xml").entries[0]
    assert 'href="https://example.com/2025/01/up.html"' in entry.content[0].value


def test_forbidden_xml_characters_are_removed_and_the_post_named(site: Site) -> None:
    site.post("2025-01-01-x.md", 'title: "Bell\\a"', "body \x0b here\n")
    run = site.run("build")
    assert run.returncode == 0
    assert run.stderr.splitlines() == [
        "warning: posts/2025-01-01-x.md:2:8: title: removed characters that XML forbids",
        "warning: posts/2025-01-01-x.md:4:1: body: removed characters that XML forbids",
    ]
    assert parse_feed(site.output / "atom.xml").entries[0].title == "Bell"


def test_a_slug_or_permalink_cannot_write_outside_the_output_folder(site: Site) -> None:
    site.write_config(feeds={"per_tag": True})
    site.post(
        "2025-01-01-x.md",
        "title: X\nslug: ../../escape\npermalink: /../../../etc/x\n"
        "categories: [../../up]\ntags: [/abs, ..]",
    )
    assert site.run("build").returncode == 0
    outside = {p for p in site.root.parent.rglob("*") if not p.is_relative_to(site.root)}
    assert outside == set()
    # Besides the output folder, only the site's own state folders are written.
    written = {
        p.relative_to(site.root).parts[0]
        for p in site.root.rglob("*")
        if p.is_file() and not p.is_relative_to(site.output)
    }
    assert written <= {"config.yaml", "posts", ".publisher-cache", ".publisher"}, written
    entry = parse_feed(site.output / "atom.xml").entries[0]
    assert entry.link == "https://example.com/etc/x"
    assert (site.output / "categories" / "up" / "atom.xml").exists()


def test_drafts_and_future_posts_stay_out_until_their_time(site: Site) -> None:
    site.post("2025-01-01-now.md", "title: Now")
    site.post("2025-01-02-draft.md", "title: Draft\ndraft: true")
    site.post("2025-01-03-off.md", "title: Withdrawn\npublished: false")
    site.post("2025-01-04-later.md", "title: Later\ndate: 2025-06-01 09:00:00 +0900")
    run = site.run("--now", "2025-05-31T23:59:00+00:00", "build")
    assert run.returncode == 0
    assert "1 scheduled, 2 drafts" in run.stdout
    assert [e.title for e in parse_feed(site.output / "atom.xml").entries] == ["Now"]
    run = site.run("--now", "2025-06-01T00:00:00+00:00", "build")
    assert [e.title for e in parse_feed(site.output / "atom.xml").entries] == ["Later", "Now"]


def test_huge_files_are_refused_quickly_with_bounded_memory(site: Site) -> None:
    site.post("2025-01-01-ok.md", "title: OK")
    with open(site.posts / "2025-01-02-huge.md", "wb") as handle:
        handle.write(b"---\ntitle: Huge\n---\n")
        handle.truncate(50 * 1024 * 1024)
    started = time.perf_counter()
    run = site.run("build")
    assert time.perf_counter() - started < 10  # a generous bound: the point is no hang
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "posts/2025-01-02-huge.md:1:1: size: file is larger than 4 MB"
    ]


def test_a_warm_build_rewrites_only_what_changed(site: Site) -> None:
    site.post("2025-01-01-a.md", "title: A\ncategories: [One]")
    site.post("2025-01-02-b.md", "title: B\ncategories: [Two]")
    first = site.run("build")
    assert "11 files written, 0 unchanged" in first.stdout  # 3 scopes x 3 formats, opml, index
    site.post("2025-01-01-a.md", "title: A2\ncategories: [One]")
    second = site.run("build")
    assert "6 files written, 5 unchanged" in second.stdout  # site and "One", three formats
    assert parse_feed(site.output / "categories" / "one" / "atom.xml").entries[0].title == "A2"
    third = site.run("build")
    assert "0 files written, 11 unchanged" in third.stdout


def test_the_repositorys_sample_site_builds_cleanly(tmp_path: Path) -> None:
    shutil.copytree(REPO / "posts", tmp_path / "posts")
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    run = Site(tmp_path, {}).run("build")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    for path in (tmp_path / "public").rglob("*.xml"):
        parse_feed(path)
    titles = [e.title for e in parse_feed(tmp_path / "public" / "atom.xml").entries]
    assert "A post from the future" not in titles
    assert "An unfinished draft" not in titles
    assert "MSとAWS、クラウドAI投資競争の最前線" in titles


@pytest.mark.skipif(
    not os.environ.get("FEEDVALIDATOR"),
    reason="set FEEDVALIDATOR to a W3C feedvalidator command to run the W3C checks",
)
def test_w3c_feed_validator_finds_no_errors_or_warnings(tmp_path: Path) -> None:
    import shlex
    import subprocess

    output = _sample_site_with_everything_on(tmp_path)
    command = shlex.split(os.environ["FEEDVALIDATOR"])
    paths = sorted(output.rglob("*.xml"))
    assert any("archive" in p.parts for p in paths)
    for path in paths:
        result = subprocess.run([*command, str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{path}:\n{result.stdout}{result.stderr}"


def _sample_site_with_everything_on(root: Path) -> Path:
    """The sample site built with archive pages of two posts, hubs, images from content."""
    shutil.copytree(REPO / "posts", root / "posts")
    settings = yaml.safe_load((REPO / "config.yaml").read_text("utf-8"))
    settings["feeds"].update(
        archive_page_size=2,
        max_items=1,
        websub_hubs=["http://127.0.0.1:9/hub"],  # nothing listens: the pings wait in the queue
        image_from_content=True,
    )
    (root / "config.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True), "utf-8")
    run = Site(root, {}).run("build")
    assert run.returncode == 0, run.stderr
    return root / "public"


def test_every_current_feed_and_archive_page_of_the_sample_site_reads_cleanly(
    tmp_path: Path,
) -> None:
    output = _sample_site_with_everything_on(tmp_path)
    pages = [p for p in output.rglob("*.xml") if "archive" in p.parts]
    assert len(pages) >= 6
    for path in sorted(output.rglob("*.xml")):
        if path.name != "feeds.opml":
            parse_feed(path)
    for path in sorted(output.rglob("*.json")):
        document = json.loads(path.read_text("utf-8"))
        assert document["version"] == "https://jsonfeed.org/version/1.1"
        assert document["hubs"] == [{"type": "WebSub", "url": "http://127.0.0.1:9/hub"}]


def test_a_feed_no_longer_made_is_removed_not_left_frozen(site: Site) -> None:
    site.post("2025-01-01-a.md", "title: A\ncategories: [Old Name]")
    assert site.run("build").returncode == 0
    old = site.output / "categories" / "old-name"
    assert (old / "atom.xml").exists()
    site.post("2025-01-01-a.md", "title: A\ncategories: [New Name]")
    run = site.run("build")
    assert run.returncode == 0
    assert "3 removed" in run.stdout
    assert not old.exists()
    assert (site.output / "categories" / "new-name" / "atom.xml").exists()
    listed = (site.output / "feeds.opml").read_text("utf-8")
    assert "old-name" not in listed and "new-name" in listed
    # Files the build never wrote are the user's: left alone.
    (site.output / "robots.txt").write_text("User-agent: *\n", "utf-8")
    site.write_config(feeds={"formats": ["atom"]})
    assert "4 removed" in site.run("build").stdout  # rss.xml and feed.json, twice
    assert (site.output / "robots.txt").exists()


def test_a_broken_index_template_is_one_line_naming_it(site: Site) -> None:
    site.post("2025-01-01-a.md", "title: A")
    (site.root / "templates").mkdir()
    (site.root / "templates" / "index.html.j2").write_text("<h1>{{ site.title }</h1>\n", "utf-8")
    run = site.run("build")
    assert run.returncode == 2
    (line,) = run.stderr.splitlines()
    assert line.startswith(f"{site.root / 'templates' / 'index.html.j2'}: line 1: ")
    assert "Traceback" not in run.stderr


def _open_by_this_process(path: Path) -> bool:
    """Whether any file descriptor of this process is open on ``path`` (Linux: /proc)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("no /proc/self/fd here")
    target = str(path.resolve())
    found = False
    for fd in fds.iterdir():
        try:
            found = found or os.readlink(fd) == target
        except OSError:
            continue  # the descriptor iterdir() itself used, closed by now
    return found


@pytest.mark.parametrize("failure", ["write", "template"])
def test_a_failed_build_leaves_the_bodies_database_closed(site: Site, failure: str) -> None:
    site.post("2025-01-01-a.md", "title: A")
    site.post("2025-01-02-b.md", "title: B")
    config = site.config()
    build(config)
    bodies = config.paths.cache / "bodies.sqlite"
    assert bodies.is_file() and not _open_by_this_process(bodies)
    site.post("2025-01-02-b.md", "title: B, edited")  # its body is looked up, then rendered
    if failure == "write":
        # A real write failure: a folder stands where the new atom.xml must go.
        (site.output / "atom.xml").unlink()
        (site.output / "atom.xml").mkdir()
        expected: type[Exception] = OSError
    else:
        (site.root / "templates").mkdir()
        (site.root / "templates" / "index.html.j2").write_text("{{ site.title }\n", "utf-8")
        expected = PublisherError
    cache = BuildCache.load(config.paths.cache, settings_key(config))
    with pytest.raises(expected):
        build(config, cache=cache)
    assert cache.closed
    assert not _open_by_this_process(bodies)


def test_a_body_that_is_not_utf8_is_one_line_and_left_out(site: Site) -> None:
    site.post("2025-01-01-good.md", "title: Good")
    (site.posts / "2025-01-02-latin1.md").write_bytes(
        b"---\ntitle: Latin-1\n---\nFirst line.\nCaf\xe9 cr\xe8me\n"
    )
    run = site.run("build")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "posts/2025-01-02-latin1.md:5:4: body: not valid UTF-8 (byte 0xE9)"
    ]
    for name in ("atom.xml", "rss.xml"):
        assert [e.title for e in parse_feed(site.output / name).entries] == ["Good"]
    items = json.loads((site.output / "feed.json").read_text("utf-8"))["items"]
    assert [item["title"] for item in items] == ["Good"]
    assert "\ufffd" not in (site.output / "atom.xml").read_text("utf-8")


def test_titles_are_plain_text_in_every_feed(site: Site) -> None:
    site.post("2025-01-01-markup.md", "title: 'Tom &amp; Jerry <b>bold</b>'", "Body.\n")
    assert site.run("build").returncode == 0
    for name in ("atom.xml", "rss.xml"):
        parsed = parse_feed(site.output / name)
        assert parsed.entries[0].title == "Tom & Jerry bold"
        # What the W3C validator reads: the title element holds text, no markup.
        tree = etree.fromstring((site.output / name).read_bytes())
        [title] = tree.xpath(
            "//a:entry/a:title | //item/title", namespaces={"a": "http://www.w3.org/2005/Atom"}
        )
        assert len(title) == 0 and title.text == "Tom & Jerry bold"
        assert title.get("type") in (None, "text")
    items = json.loads((site.output / "feed.json").read_text("utf-8"))["items"]
    assert items[0]["title"] == "Tom & Jerry bold"

"""Images, attachments and reading times in every feed, read back as a feed reader would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import feedparser
from lxml import etree

from publisher.build.pipeline import build
from tests.conftest import SEED, Site

MEDIA = "http://search.yahoo.com/mrss/"
ATOM = "http://www.w3.org/2005/Atom"
POST = "https://example.com/2025/01/02/pod.html"  # the URL of posts/2025-01-02-pod.md


def parse_feed(path: Path) -> feedparser.FeedParserDict:
    data = path.read_bytes()
    parsed = feedparser.parse(data)
    assert not parsed.bozo, f"{path}: {parsed.get('bozo_exception')}"
    etree.fromstring(data)  # well-formed XML, or this raises
    return parsed


def entries_by_title(site: Site, name: str) -> dict[str, Any]:
    return {e.title: e for e in parse_feed(site.output / name).entries}


def json_items(site: Site) -> dict[str, dict[str, Any]]:
    document = json.loads((site.output / "feed.json").read_text("utf-8"))
    return {item["title"]: item for item in document["items"]}


def media_of(path: Path) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Each entry's (or item's) Media RSS elements as (tag, attributes), by title."""
    root = etree.fromstring(path.read_bytes())
    entries = root.findall(f"{{{ATOM}}}entry") or root.findall("channel/item")
    found = {}
    for entry in entries:
        title = entry.findtext(f"{{{ATOM}}}title") or entry.findtext("title") or ""
        found[title] = [
            (etree.QName(child).localname, dict(child.attrib))
            for child in entry
            if etree.QName(child).namespace == MEDIA
        ]
    return found


def test_an_image_as_text_or_as_a_mapping_reaches_every_feed_made_absolute(site: Site) -> None:
    site.post("2025-01-02-pod.md", "title: Relative\nimage: img/cover.png")
    site.post("2025-01-03-root.md", "title: Root\nimage:\n  path: /assets/写真 1.jpg\n  alt: x")
    site.post("2025-01-04-abs.md", "title: Absolute\nimage: {path: 'https://cdn.example/a.webp'}")
    site.post("2025-01-05-none.md", "title: None")
    run = site.run("build")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    expected = {
        "Relative": ("https://example.com/2025/01/02/img/cover.png", "image/png"),
        "Root": ("https://example.com/assets/%E5%86%99%E7%9C%9F%201.jpg", "image/jpeg"),
        "Absolute": ("https://cdn.example/a.webp", "image/webp"),
    }
    for name in ("rss.xml", "atom.xml"):
        media = media_of(site.output / name)
        assert media["None"] == []
        for title, (url, kind) in expected.items():
            # Straight in the entry (no media:group): what readers look for.
            assert media[title] == [
                ("content", {"url": url, "type": kind, "medium": "image"}),
                ("thumbnail", {"url": url}),
            ], (name, title)
        entries = entries_by_title(site, name)
        for title, (url, _kind) in expected.items():
            assert entries[title].media_thumbnail[0]["url"] == url
            assert entries[title].media_content[0]["url"] == url
            assert not entries[title].get("enclosures")  # an image is not an attachment
    items = json_items(site)
    for title, (url, _kind) in expected.items():
        assert items[title]["image"] == url
    assert "image" not in items["None"]


def test_an_enclosure_reaches_every_feed(site: Site) -> None:
    site.post(
        "2025-01-02-pod.md",
        "title: Episode 1\nenclosure:\n  url: media/ep1.mp3\n  length: 12345678\n"
        "  type: audio/mpeg",
    )
    site.post(
        "2025-01-03-pdf.md",
        "title: Report\nenclosure: {url: 'https://files.example/r.pdf', length: '2048'}",
    )
    site.post("2025-01-04-zip.md", "title: Unsized\nenclosure: {url: /dl/data.bin}")
    run = site.run("build")
    assert run.returncode == 0, run.stderr
    episode = "https://example.com/2025/01/02/media/ep1.mp3"

    rss = etree.fromstring((site.output / "rss.xml").read_bytes())
    found = {
        item.findtext("title"): dict(item.find("enclosure").attrib)
        for item in rss.findall("channel/item")
    }
    assert found == {
        "Episode 1": {"url": episode, "length": "12345678", "type": "audio/mpeg"},
        "Report": {
            "url": "https://files.example/r.pdf",
            "length": "2048",
            "type": "application/pdf",
        },
        # RSS requires a length: 0 when it is not known; the type is a download's.
        "Unsized": {
            "url": "https://example.com/dl/data.bin",
            "length": "0",
            "type": "application/octet-stream",
        },
    }
    atom = etree.fromstring((site.output / "atom.xml").read_bytes())
    links = {
        entry.findtext(f"{{{ATOM}}}title"): [
            dict(link.attrib)
            for link in entry.findall(f"{{{ATOM}}}link")
            if link.get("rel") == "enclosure"
        ]
        for entry in atom.findall(f"{{{ATOM}}}entry")
    }
    assert links["Episode 1"] == [
        {"href": episode, "rel": "enclosure", "type": "audio/mpeg", "length": "12345678"}
    ]
    assert links["Unsized"] == [  # Atom's length is optional: left out when not known
        {
            "href": "https://example.com/dl/data.bin",
            "rel": "enclosure",
            "type": "application/octet-stream",
        }
    ]
    for name in ("rss.xml", "atom.xml"):
        entry = entries_by_title(site, name)["Episode 1"]
        assert [(e.href, e.type, e.length) for e in entry.enclosures] == [
            (episode, "audio/mpeg", "12345678")
        ]
        assert media_of(site.output / name)["Episode 1"] == []  # no image, no media:*
    items = json_items(site)
    assert items["Episode 1"]["attachments"] == [
        {"url": episode, "mime_type": "audio/mpeg", "size_in_bytes": 12345678}
    ]
    assert items["Unsized"]["attachments"] == [
        {"url": "https://example.com/dl/data.bin", "mime_type": "application/octet-stream"}
    ]
    # An enclosure is not an image: the feeds declare no media namespace.
    assert MEDIA.encode() not in (site.output / "rss.xml").read_bytes()


def test_the_first_image_of_the_body_only_when_image_from_content_is_on(site: Site) -> None:
    body = "Intro.\n\n![first](pics/one.png)\n\n![second](/two.png)\n"
    site.post("2025-01-02-pod.md", "title: From body", body)
    site.post("2025-01-03-own.md", "title: Own image\nimage: /mine.gif", body)
    site.post("2025-01-04-plain.md", "title: No image", "Just words.\n")
    build(site.config())
    items = json_items(site)
    assert "image" not in items["From body"]
    assert items["Own image"]["image"] == "https://example.com/mine.gif"
    assert media_of(site.output / "rss.xml")["From body"] == []

    site.write_config(feeds={"image_from_content": True})
    build(site.config())
    items = json_items(site)
    first = "https://example.com/2025/01/02/pics/one.png"
    assert items["From body"]["image"] == first
    assert items["Own image"]["image"] == "https://example.com/mine.gif"  # the front matter's wins
    assert "image" not in items["No image"]
    for name in ("rss.xml", "atom.xml"):
        assert entries_by_title(site, name)["From body"].media_thumbnail[0]["url"] == first
        assert media_of(site.output / name)["No image"] == []


def test_feeds_without_images_declare_no_media_namespace(site: Site) -> None:
    site.post("2025-01-02-pod.md", "title: Words", "![in the body](a.png)\n")
    build(site.config())  # image_from_content is off by default
    for name in ("rss.xml", "atom.xml"):
        data = (site.output / name).read_bytes()
        assert MEDIA.encode() not in data
        assert b"enclosure" not in data


def test_bad_images_and_enclosures_are_one_line_each_and_the_others_still_publish(
    site: Site,
) -> None:
    site.post("2025-01-01-good.md", "title: Good\nimage: ok.png\nenclosure: {url: a.mp3}")
    site.post("2025-01-02-number.md", "title: Number\nimage: 42")
    site.post("2025-01-03-nourl.md", "title: No URL\nenclosure:\n  length: 10\n  type: audio/mpeg")
    site.post("2025-01-04-negative.md", "title: Negative\nenclosure:\n  url: a.mp3\n  length: -5")
    site.post("2025-01-05-flow.md", "title: Flow\nenclosure: {url: a.mp3, type: mp3}")
    site.post("2025-01-06-script.md", "title: Script\nimage: 'javascript:alert(1)'")
    site.post("2025-01-07-nopath.md", "title: No path\nimage:\n  alt: A cat")
    site.post("2025-01-08-minutes.md", "title: Minutes\nreading_time: -3")
    run = site.run("build")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "posts/2025-01-02-number.md:3:8: image: must be a URL or a path, or a mapping with "
        "path, got 42",
        "posts/2025-01-03-nourl.md:3:11: enclosure: url: missing: an enclosure needs the "
        "file's URL",
        "posts/2025-01-04-negative.md:5:11: enclosure: length: must be the file's size in "
        "bytes, a whole number 0 or more, got -5",
        "posts/2025-01-05-flow.md:3:31: enclosure: type: must be a media type such as "
        "audio/mpeg, got 'mp3'",
        "posts/2025-01-06-script.md:3:8: image: must be an http(s) URL or a path, got "
        "'javascript:alert(1)'",
        "posts/2025-01-07-nopath.md:3:7: image: path: missing: a mapping gives the image's "
        "URL as path",
        # An unreadable reading_time is only a warning: the time is worked out instead.
        "warning: posts/2025-01-08-minutes.md:3:15: reading_time: must be a number of minutes"
        " greater than 0, got -3; worked out from the body instead",
    ]
    assert "Traceback" not in run.stderr
    for name in ("rss.xml", "atom.xml"):
        assert [e.title for e in parse_feed(site.output / name).entries] == ["Minutes", "Good"]
    items = json_items(site)
    assert items["Minutes"]["_publisher"] == {"reading_time": 1}
    good = items["Good"]
    assert good["image"] == "https://example.com/2025/01/01/ok.png"
    assert good["attachments"] == [
        {"url": "https://example.com/2025/01/01/a.mp3", "mime_type": "audio/mpeg"}
    ]


def test_reading_time_from_the_front_matter_or_the_body_in_the_json_feed(site: Site) -> None:
    english = " ".join(["word"] * 450) + "\n"  # 450 words: 2.25 minutes at 200 a minute
    japanese = "あ" * 1200 + "\n"  # 1,200 characters: 2.4 minutes at 500 a minute
    site.post("2025-01-01-given.md", "title: Given\nreading_time: 7", english)
    site.post("2025-01-02-english.md", "title: English", english)
    site.post("2025-01-03-japanese.md", "title: Japanese", japanese)
    site.post("2025-01-04-short.md", "title: Short", "Two words.\n")
    site.post("2025-01-05-mixed.md", "title: Mixed", "AIとクラウド " * 250 + "\n")
    (site.posts / "2025-01-06-seed.md").write_bytes(SEED.read_bytes())  # reading_time: 8
    # The seed post without its reading_time: 157 words and 2,110 characters.
    seed = SEED.read_text("utf-8").replace("reading_time: 8\n", "").replace('title: "', 'title: "X')
    (site.posts / "2025-01-07-seed-computed.md").write_text(seed, "utf-8")
    run = site.run("build")
    assert run.returncode == 0, run.stderr
    minutes = {t: item["_publisher"] for t, item in json_items(site).items()}
    assert minutes == {
        "Given": {"reading_time": 7},
        "English": {"reading_time": 3},
        "Japanese": {"reading_time": 3},
        "Short": {"reading_time": 1},
        # 250 words and 1,250 characters: 1.25 + 2.5 minutes.
        "Mixed": {"reading_time": 4},
        "MSとAWS、クラウドAI投資競争の最前線": {"reading_time": 8},
        "XMSとAWS、クラウドAI投資競争の最前線": {"reading_time": 6},
    }

    site.write_config(feeds={"reading_words_per_minute": 100, "reading_chars_per_minute": 1200})
    assert site.run("build").returncode == 0
    minutes = {t: item["_publisher"]["reading_time"] for t, item in json_items(site).items()}
    assert (minutes["Given"], minutes["English"], minutes["Japanese"]) == (7, 5, 1)


def test_a_warm_build_after_adding_an_image_matches_a_cold_one(site: Site, tmp_path: Path) -> None:
    site.post("2025-01-02-pod.md", "title: Pod", "![x](a.png)\n")
    site.write_config(feeds={"image_from_content": True})
    config = site.config()
    build(config)
    site.post("2025-01-02-pod.md", "title: Pod\nimage: b.png\nenclosure: {url: e.mp3, length: 3}")
    result = build(config)
    assert result.parsed == 1
    warm = {p.name: p.read_bytes() for p in site.output.iterdir() if p.is_file()}
    build(config, use_cache=False)
    cold = {p.name: p.read_bytes() for p in site.output.iterdir() if p.is_file()}
    assert warm == cold
    item = json.loads(warm["feed.json"])["items"][0]
    assert item["image"] == "https://example.com/2025/01/02/b.png"
    assert item["attachments"][0]["size_in_bytes"] == 3

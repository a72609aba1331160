"""WebSub end to end: the real ``publisher build`` pings a real hub on 127.0.0.1.

The hub (:mod:`tests.websub.hub_server`) records each ping's form; the time is
given with ``--now``, so a retry falls due without sleeping.
"""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import feedparser
from lxml import etree

from tests.conftest import Site
from tests.websub.hub_server import hub_server

NOW = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
FEED_FILES = ("atom.xml", "rss.xml", "feed.json")


def _posts(site: Site) -> None:
    site.post("2026-05-01-one.md", "title: One\ndate: 2026-05-01 10:00\ncategories: [news]")
    site.post("2026-05-02-two.md", "title: Two\ndate: 2026-05-02 10:00\ncategories: [notes]")


def _build(site: Site, now: datetime = NOW) -> tuple[int, str, str]:
    done = site.run("--now", now.isoformat(), "build")
    return done.returncode, done.stdout, done.stderr


def _feed_urls(site: Site, folder: str = "") -> set[str]:
    root = site.output / folder
    return {
        "https://example.com/" + path.relative_to(site.output).as_posix()
        for path in root.rglob("*")
        if path.name in FEED_FILES
    }


def _queue(site: Site) -> list[dict[str, object]]:
    path = site.root / ".publisher" / "websub.json"
    pings: list[dict[str, object]] = json.loads(path.read_text("utf-8"))["pings"]
    return pings


def test_one_ping_per_changed_feed_and_none_without_a_change(site: Site) -> None:
    _posts(site)
    with hub_server() as hub:
        site.write_config(feeds={"websub_hubs": [hub.url]})
        code, out, err = _build(site)
        assert code == 0, err
        feeds = _feed_urls(site)
        assert len(feeds) == 9  # the site, news and notes, in three formats
        assert sorted(hub.topics()) == sorted(feeds)
        assert all(ping["hub.mode"] == ["publish"] for ping in hub.pings)
        assert set(hub.content_types) == {"application/x-www-form-urlencoded"}
        assert "WebSub: 9 pings sent" in out
        assert _queue(site) == []

        hub.clear()
        code, _, err = _build(site, NOW + timedelta(minutes=5))
        assert code == 0, err
        assert hub.topics() == []

        # An edit of the notes post changes the site's feeds and the notes feeds only.
        site.post(
            "2026-05-02-two.md",
            "title: Two, edited\ndate: 2026-05-02 10:00\ncategories: [notes]",
        )
        code, _, err = _build(site, NOW + timedelta(minutes=10))
        assert code == 0, err
        expected = {u for u in feeds if "/categories/" not in u} | _feed_urls(
            site, "categories/notes"
        )
        assert sorted(hub.topics()) == sorted(expected)
        assert len(hub.topics()) == 6


def test_archive_pages_advertise_the_hub_and_are_pinged_when_they_change_not_when_new(
    site: Site,
) -> None:
    site.write_config(feeds={"formats": ["atom"], "per_category": False, "archive_page_size": 2})
    for day in range(1, 6):
        site.post(f"2026-04-0{day}-p{day}.md", f"title: P{day}\ndate: 2026-04-0{day} 10:00")
    with hub_server() as hub:
        site.write_config(
            feeds={
                "formats": ["atom"],
                "per_category": False,
                "archive_page_size": 2,
                "websub_hubs": [hub.url],
            }
        )
        code, _, err = _build(site)
        assert code == 0, err
        page = site.output / "archive" / "atom" / "1.xml"
        links = {
            link.get("rel"): link.get("href")
            for link in etree.fromstring(page.read_bytes()).findall(
                "{http://www.w3.org/2005/Atom}link"
            )
        }
        assert links["hub"] == hub.url
        assert links["self"] == "https://example.com/archive/atom/1.xml"
        # Three pages made new: nobody can have subscribed to them yet.
        assert hub.topics() == ["https://example.com/atom.xml"]

        hub.clear()
        site.post("2026-04-01-p1.md", "title: P1, edited\ndate: 2026-04-01 10:00")
        code, _, err = _build(site, NOW + timedelta(minutes=5))
        assert code == 0, err
        # P1 is in page 1, and in the current feed (max_items 20 holds all five).
        assert sorted(hub.topics()) == [
            "https://example.com/archive/atom/1.xml",
            "https://example.com/atom.xml",
        ]


def test_a_ping_the_hub_refused_with_503_stays_queued_and_goes_on_the_next_try(
    site: Site,
) -> None:
    site.write_config(feeds={"formats": ["atom"], "per_category": False})
    _posts(site)
    with hub_server() as hub:
        site.write_config(feeds={"websub_hubs": [hub.url]})
        hub.fail_next = 1
        code, _, err = _build(site)
        assert code == 0, err
        assert "warning: WebSub hub " + hub.url + " failed: HTTP 503" in err
        assert hub.topics() == []
        [entry] = _queue(site)
        assert entry["topic"] == "https://example.com/atom.xml"
        assert entry["attempts"] == 1

        # Not due yet: the backoff is a minute.
        _build(site, NOW + timedelta(seconds=30))
        assert hub.topics() == [] and len(_queue(site)) == 1

        code, _, err = _build(site, NOW + timedelta(minutes=2))
        assert code == 0, err
        assert hub.topics() == ["https://example.com/atom.xml"]
        assert _queue(site) == []


def _refusing_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hub"


def test_a_hub_that_refuses_connections_is_a_warning_not_a_failure(site: Site) -> None:
    _posts(site)
    refusing = _refusing_url()
    site.write_config(feeds={"websub_hubs": [refusing], "formats": ["atom", "json"]})
    code, _, err = _build(site)
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning: WebSub")]
    assert len(warnings) == 1 and refusing in warnings[0]
    assert "6 ping(s) queued" in warnings[0]
    assert (site.output / "atom.xml").exists()
    assert len(_queue(site)) == 6


def test_every_feed_advertises_its_hubs_and_itself(site: Site) -> None:
    _posts(site)
    with hub_server() as hub:
        hubs = [hub.url, hub.url + "/second"]
        site.write_config(feeds={"websub_hubs": hubs})
        code, _, err = _build(site)
        assert code == 0, err
        assert len(hub.topics()) == 2 * 9  # each hub hears of each feed

    atom = feedparser.parse((site.output / "atom.xml").read_bytes())
    links = {(link["rel"], link["href"]) for link in atom.feed.links}
    assert {("hub", h) for h in hubs} | {("self", "https://example.com/atom.xml")} <= links

    rss = etree.fromstring((site.output / "rss.xml").read_bytes())
    atom_links = rss.findall("channel/{http://www.w3.org/2005/Atom}link")
    assert [(el.get("rel"), el.get("href")) for el in atom_links] == [
        ("self", "https://example.com/rss.xml"),
        *(("hub", h) for h in hubs),
    ]
    assert rss.findtext("channel/link") == "https://example.com/"

    document = json.loads((site.output / "feed.json").read_bytes())
    assert document["hubs"] == [{"type": "WebSub", "url": h} for h in hubs]
    assert document["feed_url"] == "https://example.com/feed.json"

    category = feedparser.parse((site.output / "categories" / "news" / "atom.xml").read_bytes())
    assert ("hub", hubs[0]) in {(link["rel"], link["href"]) for link in category.feed.links}


def test_without_hubs_the_feeds_say_nothing_of_websub(site: Site) -> None:
    _posts(site)
    code, _, err = _build(site)
    assert code == 0, err
    for name in FEED_FILES:
        assert b"hub" not in (site.output / name).read_bytes()
    assert not (site.root / ".publisher" / "websub.json").exists()

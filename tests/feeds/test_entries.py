"""Entries made once and spliced into every feed that shows them, and cached between builds."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import feedparser
import pytest

from publisher import __version__
from publisher.build.pipeline import build, load_site
from publisher.feeds import plan_scopes
from publisher.feeds.documents import feed_document, feed_updated
from publisher.feeds.entries import fill_entry, load_entry_extensions, serialize
from publisher.site.markup import render
from publisher.site.posts import read_body
from tests.conftest import Site


def _posts(site: Site) -> None:
    site.post(
        "2025-01-02-pod.md",
        "title: 'Tom & Jerry <b>bold</b>'\ncategories: [AI技術, Web]\ntags: [AI]\n"
        "image: img/cover.png\nenclosure: {url: ep1.mp3, length: 1234, type: audio/mpeg}",
        "# 見出し\n\n本文です。 <script>x</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
    )
    site.post("2025-01-03-plain.md", "title: Plain\ncategories: [Web]\nauthor: Someone", "Hi.\n")
    site.post(
        "2025-01-04-ja.md", "title: 日本語\ntags: [AI, 技術]\nexcerpt: 要約", "```\ncode\n```\n"
    )


@pytest.mark.parametrize("hubs", [[], ["https://hub.example/"]])
def test_a_spliced_feed_is_byte_for_byte_what_feedgen_makes_whole(
    site: Site, hubs: list[str]
) -> None:
    """The splice of cut-out entries equals feedgen's whole document with those entries."""
    site.settings["feeds"] = {"websub_hubs": hubs, "max_items": 2, "archive": False}
    site.write_config()
    _posts(site)
    config = site.config()
    posts, *_ = load_site(config)
    rendered = {
        p.id: render(read_body((config.paths.root / p.source).read_bytes()), "https://e.x/")
        for p in posts.published
    }
    for scope in plan_scopes(config, posts.published):
        for fmt in ("atom", "rss"):
            spliced = feed_document(config, scope, fmt, rendered)
            # What feedgen makes adding every entry to one document (max_items 2: the
            # oldest post is shown in summary).
            whole = _whole_document(config, scope, fmt, rendered, hubs)
            assert spliced == whole, (scope.name, fmt)
            assert not feedparser.parse(spliced).bozo


def _whole_document(config, scope, fmt, rendered, hubs):  # type: ignore[no-untyped-def]
    from feedgen.feed import FeedGenerator

    from publisher.feeds.documents import _ChannelLinks
    from publisher.feeds.entries import post_image
    from publisher.feeds.scopes import post_url

    site = config.site
    full = scope.posts[: config.feeds.max_items]
    bodies = [rendered[p.id] if p in full else None for p in scope.posts]
    fg = FeedGenerator()
    load_entry_extensions(
        fg,
        images=any(
            post_image(config, p, b, post_url(config, p))
            for p, b in zip(scope.posts, bodies, strict=True)
        ),
        attachments=any(p.enclosure is not None for p in scope.posts),
    )
    fg.id(scope.url(config, fmt))
    fg.title(scope.title)
    fg.subtitle(site.description or scope.title)
    fg.link(href=scope.url(config, fmt), rel="self")
    extra = [("hub", hub) for hub in hubs]
    if extra and fmt == "atom":
        for rel, href in extra:
            fg.link(href=href, rel=rel)
    elif extra:
        fg.register_extension("channel_links", _ChannelLinks, None, atom=False, rss=True)
        fg.channel_links.links = extra
    fg.link(href=scope.home(config), rel="alternate")
    fg.language(site.language)
    fg.author({"name": site.author})
    fg.generator("publisher", __version__)
    fg.updated(feed_updated(config, scope))
    for post, body in zip(scope.posts, bodies, strict=True):
        fill_entry(config, fg.add_entry(order="append"), post, body)
    return serialize(fg, fmt)


def test_a_warm_build_takes_unchanged_entries_from_the_cache(site: Site, tmp_path: Path) -> None:
    site.settings["feeds"] = {"max_items": 100, "formats": ["atom", "rss"]}
    site.write_config()
    _posts(site)
    config = site.config()
    build(config)
    with sqlite3.connect(config.paths.cache / "bodies.sqlite") as db:
        stored = db.execute("SELECT count(*) FROM entries").fetchone()[0]
    assert stored == 3  # one record per post, holding both formats

    time.sleep(0.01)
    site.post("2025-01-03-plain.md", "title: Plain, edited\ncategories: [Web]", "Hi again.\n")
    warm = build(config)
    assert warm.rendered == 1  # only the edited post: the others' entries were cached
    cold_site = Site(tmp_path / "cold", site.settings)
    shutil.copytree(site.posts, cold_site.posts)
    cold_site.write_config()
    build(cold_site.config(), use_cache=False)
    for name in ("atom.xml", "rss.xml", "categories/web/atom.xml", "categories/ai技術/rss.xml"):
        assert (site.output / name).read_bytes() == (cold_site.output / name).read_bytes()
    titles = [e.title for e in feedparser.parse((site.output / "atom.xml").read_bytes()).entries]
    assert titles == ["日本語", "Plain, edited", "Tom & Jerry bold"]


def test_entries_cached_under_other_settings_are_made_again(site: Site) -> None:
    site.settings["feeds"] = {"formats": ["atom"]}
    site.write_config()
    _posts(site)
    build(site.config())
    site.settings["site"]["author"] = "Another Author"  # entries show the site's author
    site.write_config()
    build(site.config())
    entries = feedparser.parse((site.output / "atom.xml").read_bytes()).entries
    authors = {e.title: e.author for e in entries}
    assert authors["日本語"] == "Another Author"
    assert authors["Plain"] == "Someone"

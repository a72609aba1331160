"""The site reader: the web forms and the digests read the posts through a cache, never cold
twice, and always see what a cold read would."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from publisher.build.pipeline import build, load_site
from publisher.build.reader import SiteReader
from publisher.config import Config
from publisher.digest.preview import preview_digest
from publisher.digest.send import send_digest
from publisher.mail import MemoryBackend
from publisher.site.posts import PostSet
from publisher.store import Store
from publisher.web.categories import REFRESH, SiteCategories
from tests.conftest import Site

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 23, 8, 0, 5, tzinfo=TOKYO)  # just after Monday's digest fell due
JOINED = datetime(2026, 11, 10, tzinfo=TOKYO)
AN_HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


def _age(site: Site) -> None:
    """Date every post file an hour back, as on a real site where posts were saved long ago.

    A stat is trusted only for a file last modified well before the read that
    recorded it; a file saved a moment ago is hashed again until then.
    """
    for path in site.posts.rglob("*.md"):
        os.utime(path, ns=(AN_HOUR_AGO_NS, AN_HOUR_AGO_NS))


def _three_posts(site: Site) -> Config:
    site.post("2026-11-20-python.md", "title: Python news\ncategories: [Python]")
    site.post("2026-11-21-ai.md", "title: AIの話\ncategories: [AI技術]", "本文です。\n")
    site.post("2026-11-22-draft.md", "title: Draft\ndraft: true\ncategories: [Secret]")
    _age(site)
    return site.config()


def _view(posts: PostSet) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [
        (p.id, p.date.isoformat(), p.title, tuple(p.categories))
        for p in posts.published + posts.scheduled + posts.drafts
    ]


def _forge(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (as long) in a file, leaving its stat as it was.

    No reader that trusts the stat can tell: what it serves afterwards shows
    whether it opened the file.
    """
    before = path.stat()
    data = path.read_bytes().replace(old.encode("utf-8"), new.encode("utf-8"))
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_mtime_ns, path.stat().st_size) == (before.st_mtime_ns, before.st_size)


# --- the subscribe form ------------------------------------------------------------------------


def test_the_forms_second_refresh_of_an_unchanged_site_reads_no_post_file(site: Site) -> None:
    config = _three_posts(site)
    ticks = [0.0]
    categories = SiteCategories(config, lambda: NOW, monotonic=lambda: ticks[0])
    assert categories.names() == ("AI技術", "Python")
    assert categories.reader.parsed == 3  # nothing built: the first read is cold

    # Changed in a way only opening the file shows: the refresh must not open it.
    _forge(site.posts / "2026-11-20-python.md", "[Python]", "[Pithon]")
    ticks[0] += REFRESH
    assert categories.names() == ("AI技術", "Python")
    # Not parsed, and not even opened to be hashed: the first read vouched for each stat.
    assert (categories.reader.parsed, categories.reader.rechecked) == (0, 0)

    site.post("2026-11-20-python.md", "title: Python news\ncategories: [Python, Go]")
    ticks[0] += REFRESH / 2
    assert categories.names() == ("AI技術", "Python")  # not looked at again yet
    ticks[0] += REFRESH / 2
    assert categories.names() == ("AI技術", "Go", "Python")
    assert categories.reader.parsed == 1


def test_the_form_starts_from_the_builds_cache(site: Site) -> None:
    config = _three_posts(site)
    build(config)
    _forge(site.posts / "2026-11-20-python.md", "[Python]", "[Pithon]")
    categories = SiteCategories(config, lambda: NOW)
    assert categories.names() == ("AI技術", "Python")
    assert (categories.reader.parsed, categories.reader.rechecked) == (0, 0)


# --- reading through the build's cache ---------------------------------------------------------


def test_reading_through_the_builds_cache_parses_only_what_changed_since(site: Site) -> None:
    config = _three_posts(site)
    build(config)
    unchanged = SiteReader(config, build_cache=True)
    assert unchanged.read(NOW).parsed == 0 and unchanged.rechecked == 0

    site.post("2026-11-21-ai.md", "title: AIの話、続き\ncategories: [AI技術, Python]")
    site.post("2026-11-19-new.md", "title: New\ncategories: [New]")
    (site.posts / "2026-11-22-draft.md").unlink()
    reader = SiteReader(config, build_cache=True)
    warm = reader.read(NOW)
    assert warm.parsed == 2  # the edited post and the new one
    cold = load_site(config, NOW)
    assert cold[3] == 3
    assert warm.posts == cold[0] and (warm.warnings, warm.stale) == (cold[1], cold[2])
    assert _view(warm.posts) == [
        (
            "tag:example.com,2026-11-21:2026-11-21-ai",
            "2026-11-21T00:00:00+09:00",
            "AIの話、続き",
            ("AI技術", "Python"),
        ),
        (
            "tag:example.com,2026-11-20:2026-11-20-python",
            "2026-11-20T00:00:00+09:00",
            "Python news",
            ("Python",),
        ),
        ("tag:example.com,2026-11-19:2026-11-19-new", "2026-11-19T00:00:00+09:00", "New", ("New",)),
    ]


def test_a_second_save_in_the_same_instant_as_the_build_read_it_is_seen(site: Site) -> None:
    # Saved just before the build read it, then saved again with the same size and
    # stat: the build's stat cannot be trusted, so the reader hashes the file.
    path = site.post("2026-11-20-python.md", "title: Python news\ncategories: [Python]")
    config = site.config()
    build(config)
    _forge(path, "Python news", "Python nows")
    read = SiteReader(config, build_cache=True).read(NOW)
    assert [p.title for p in read.posts.published] == ["Python nows"]


def test_reading_through_the_builds_cache_never_writes_it(site: Site) -> None:
    config = _three_posts(site)
    build(config)
    folder = config.paths.cache
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    site.post("2026-11-21-ai.md", "title: Edited after the build")
    reader = SiteReader(config, build_cache=True)
    for _ in range(2):
        assert reader.read(NOW).posts.published[0].title == "Edited after the build"
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    assert after == before


def test_a_missing_or_unreadable_build_cache_means_a_cold_read(site: Site) -> None:
    config = _three_posts(site)
    cold = load_site(config, NOW)[0]
    assert not config.paths.cache.exists()
    missing = SiteReader(config, build_cache=True)
    assert missing.read(NOW).posts == cold and missing.parsed == 3

    config.paths.cache.parent.mkdir(parents=True, exist_ok=True)
    config.paths.cache.write_bytes(b"not a folder")
    unreadable = SiteReader(config, build_cache=True)
    assert unreadable.read(NOW).posts == cold and unreadable.parsed == 3

    config.paths.cache.unlink()
    config.paths.cache.mkdir()
    (config.paths.cache / "build.marshal").write_bytes(b"\x00garbage")
    corrupt = SiteReader(config, build_cache=True)
    assert corrupt.read(NOW).posts == cold and corrupt.parsed == 3


# --- digest send and preview -------------------------------------------------------------------


def _built_news(site: Site, store_url: str) -> Config:
    """The three posts and one reader (Ann), built once; then the Python post's title is
    forged to "Python nows" behind the build's back (its stat unchanged)."""
    site.write_config(digest={"from": "Test Site <news@example.com>"}, store={"url": store_url})
    config = _three_posts(site)
    with Store.open(config) as store:
        store.add_subscriber("ann@example.net", name="Ann", categories=(), now=JOINED)
    build(config)
    # Unchanged to any reader that trusts the build's stat; a cold read sees the new title.
    _forge(site.posts / "2026-11-20-python.md", "Python news", "Python nows")
    return config


def _text(rendered_text: str) -> str:
    return rendered_text.replace("\r\n", "\n")


def test_digest_send_reads_through_the_builds_cache_and_sees_later_edits(
    site: Site, store_url: str
) -> None:
    config = _built_news(site, store_url)
    assert [p.title for p in load_site(config, NOW)[0].published][-1] == "Python nows"
    site.post("2026-11-21-ai.md", "title: AIの話、続き\ncategories: [AI技術]")  # a real edit
    with Store.open(config) as store, MemoryBackend() as backend:
        report = send_digest(config, store, backend, now=NOW, secret=b"site reader secret")
    assert report.sent == 1
    (message,) = backend.messages
    body = message.get_body(("plain",))
    assert body is not None
    text = _text(body.get_content())
    assert "\nAIの話、続き\n" in text  # edited after the build: seen
    assert "\nPython news\n" in text  # never opened: the build's parse was used
    assert "Python nows" not in text


def test_digest_preview_reads_through_the_builds_cache_and_sees_later_edits(
    site: Site, store_url: str
) -> None:
    config = _built_news(site, store_url)
    site.post("2026-11-21-ai.md", "title: AIの話、続き\ncategories: [AI技術]")
    (site.posts / "2026-11-22-draft.md").unlink()
    site.post("2026-11-22-new.md", "title: Brand new\ncategories: [New]")
    preview = preview_digest(config, now=NOW)
    assert preview.rendered is not None and preview.posts == 3
    text = _text(preview.rendered.text)
    assert "\nAIの話、続き\n" in text and "\nBrand new\n" in text
    assert "\nPython news\n" in text and "Python nows" not in text

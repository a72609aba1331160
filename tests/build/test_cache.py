"""The build cache: what a warm build reuses must match what a cold build would make."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from publisher.build.cache import BuildCache
from publisher.build.pipeline import build, settings_key
from publisher.config import Config
from tests.conftest import Site


def feeds_of(site: Site) -> dict[str, bytes]:
    return {
        p.relative_to(site.output).as_posix(): p.read_bytes()
        for p in sorted(site.output.rglob("*"))
        if p.is_file()
    }


def cold_feeds(site: Site, tmp_path: Path) -> dict[str, bytes]:
    """What a cold build makes of the site as it is now, in a copy of it."""
    copy = Site(tmp_path / f"cold-{time.monotonic_ns()}", site.settings)
    shutil.copytree(site.posts, copy.posts)
    copy.write_config()
    build(copy.config(), use_cache=False)
    return feeds_of(copy)


def test_warm_builds_after_edits_deletions_and_additions_match_a_cold_build(
    site: Site, tmp_path: Path
) -> None:
    for day in range(1, 8):
        site.post(f"2025-01-0{day}-p{day}.md", f"title: P{day}\ncategories: [C{day % 3}]")
    config = site.config()
    steps = [
        lambda: site.post("2025-01-03-p3.md", "title: P3 edited\ncategories: [C0]", "new\n"),
        lambda: (site.posts / "2025-01-05-p5.md").unlink(),
        lambda: site.post("2025-01-09-p9.md", "title: P9\ncategories: [New]"),
        lambda: site.post("2025-01-02-p2.md", "title: P2\ndraft: true"),
        lambda: (site.posts / "2025-01-02-p2.md").write_text("---\ntitle: [broken\n---\n"),
    ]
    build(config)  # cold, fills the cache
    parsed = []
    for step in steps:
        step()
        result = build(config)  # warm: reads the base index and its delta
        parsed.append(result.parsed)
        warm = feeds_of(site)
        assert warm == cold_feeds(site, tmp_path)
    assert parsed == [1, 0, 1, 1, 1]  # only what changed was read again
    assert (config.paths.cache / "build.delta.marshal").exists()


def test_the_index_is_rewritten_once_the_delta_grows(site: Site) -> None:
    config = site.config()
    for i in range(3):
        site.post(f"2025-01-0{i + 1}-p.md", "title: P")
    build(config)
    cache = BuildCache.load(config.paths.cache, settings_key(config))
    assert len(cache.files) == 3
    # Past the delta's limit the whole index is written again and the delta dropped.
    for i in range(600):
        site.post(f"2024-02-01-many-{i}.md", "title: Many")
    result = build(config)
    assert result.parsed == 600
    assert not (config.paths.cache / "build.delta.marshal").exists()
    assert len(BuildCache.load(config.paths.cache, cache.settings).files) == 603


def test_a_torn_cache_is_never_trusted(site: Site) -> None:
    site.post("2025-01-01-a.md", "title: A")
    config = site.config()
    build(config)
    site.post("2025-01-01-a.md", "title: A2")
    build(config)
    delta = config.paths.cache / "build.delta.marshal"
    delta.write_bytes(delta.read_bytes()[:10])
    assert BuildCache.load(config.paths.cache, settings_key(config)).files == {}
    base = config.paths.cache / "build.marshal"
    base.write_bytes(b"\x00garbage")
    os.utime(site.posts / "2025-01-01-a.md")
    result = build(config)
    assert result.parsed == 1 and result.errors == []


def test_a_no_cache_build_replaces_the_cache_instead_of_leaving_it_stale(
    site: Site, tmp_path: Path
) -> None:
    site.post("2025-01-01-a.md", "title: Original")
    config = site.config()
    build(config)
    # `publisher build --no-cache`, as after upgrading Markdown: every body rendered again.
    assert build(config, use_cache=False).rendered == 1
    site.post("2025-01-01-a.md", "title: Changed")
    build(config, use_cache=False)
    site.post("2025-01-01-a.md", "title: Original")
    build(config)
    assert b"Changed" not in (site.output / "atom.xml").read_bytes()
    assert feeds_of(site) == cold_feeds(site, tmp_path)


def test_a_broken_post_kept_at_its_last_good_version_never_poisons_the_cache(
    site: Site, tmp_path: Path
) -> None:
    good = "title: Good\ncategories: [News]"
    site.post("2025-01-01-a.md", good, "Good body.\n")
    config = site.config()
    build(config)
    # Broken by an edit: a plain build rejects it, a watcher's build keeps its last
    # good version; its body on disk now carries text that must not stick.
    (site.posts / "2025-01-01-a.md").write_text(
        "---\ntitle: [broken\n---\nMARKER in the body.\n", "utf-8"
    )
    build(config)
    kept = build(config, keep_last_good=True)
    assert [p.title for p in kept.scopes[0].posts] == ["Good"]
    # Fixed again, byte for byte: every feed must be what a cold build makes.
    site.post("2025-01-01-a.md", good, "Good body.\n")
    build(config)
    assert b"MARKER" not in (site.output / "atom.xml").read_bytes()
    assert feeds_of(site) == cold_feeds(site, tmp_path)


def test_an_edit_that_moves_nothing_reuses_the_last_plan(site: Site, tmp_path: Path) -> None:
    for day in range(1, 6):
        site.post(f"2025-01-0{day}-p{day}.md", f"title: P{day}\ncategories: [C{day % 2}]")
    (site.posts / "2025-01-06-broken.md").write_text("---\ntitle: [x\n---\n", "utf-8")
    config = site.config()
    build(config)
    # A typo fixed in the title and a new paragraph: no date, category or tag moved.
    site.post("2025-01-04-p4.md", "title: P4, fixed\ncategories: [C0]", "More.\n")
    result = build(config)
    assert not result.read_all and result.parsed == 1
    assert feeds_of(site) == cold_feeds(site, tmp_path)
    # What the build reports is what a full read reports.
    full = build(config, use_cache=False)
    assert (result.published, len(result.errors), result.drafts) == (5, 1, 0)
    assert [str(e) for e in result.errors] == [str(e) for e in full.errors]
    assert [s.name for s in result.scopes] == [s.name for s in full.scopes]


def test_edits_that_move_a_post_or_its_time_make_the_plan_again(site: Site, tmp_path: Path) -> None:
    for day in range(1, 6):
        site.post(f"2025-01-0{day}-p{day}.md", f"title: P{day}\ncategories: [C{day % 2}]")
    site.post("2025-03-01-later.md", "title: Later\ncategories: [C9]")
    config = site.config()
    before_later = datetime(2025, 2, 1, tzinfo=UTC)
    build(config, now=before_later)
    edits = [
        lambda: site.post("2025-01-02-p2.md", "title: P2\ncategories: [C5]"),  # category
        lambda: site.post("2025-01-02-p2.md", "title: P2\ndate: 2025-01-09\ncategories: [C0]"),
        lambda: site.post("2025-01-02-p2.md", "title: P2\ndraft: true"),
        lambda: site.post("2025-01-02-p2.md", "title: P2\ntags: [t]"),
        lambda: (site.posts / "2025-01-02-p2.md").write_text("---\ntitle: [\n---\n", "utf-8"),
        lambda: site.post("2025-01-02-p2.md", "title: P2"),  # mended
    ]
    for edit in edits:
        edit()
        result = build(config, now=before_later)
        assert result.read_all and result.parsed == 1
    # Nothing edited, but the scheduled post's time has come.
    result = build(config, now=datetime(2025, 3, 2, tzinfo=UTC))
    assert result.read_all and result.scheduled == []
    assert b"Later" in (site.output / "atom.xml").read_bytes()
    # And the clock turned back before it: it is scheduled again.
    result = build(config, now=before_later)
    assert result.read_all and [p.title for p in result.scheduled] == ["Later"]
    assert b"Later" not in (site.output / "atom.xml").read_bytes()


def test_a_new_or_deleted_post_or_other_feed_settings_make_the_plan_again(site: Site) -> None:
    site.post("2025-01-01-a.md", "title: A")
    config = site.config()
    build(config)
    site.post("2025-01-02-b.md", "title: B")
    assert build(config).read_all
    (site.posts / "2025-01-02-b.md").unlink()
    assert build(config).read_all
    assert not build(config).read_all  # nothing changed: the plan holds
    site.write_config(feeds={"max_items": 1})
    assert build(site.config()).read_all


def test_the_watchers_last_good_plan_is_not_reused_by_a_plain_build(site: Site) -> None:
    site.post("2025-01-01-a.md", "title: Good")
    config = site.config()
    build(config)
    (site.posts / "2025-01-01-a.md").write_text("---\ntitle: [broken\n---\n", "utf-8")
    kept = build(config, keep_last_good=True)
    assert len(kept.stale) == 1
    plain = build(config)
    assert plain.read_all and len(plain.errors) == 1
    assert b"Good" not in (site.output / "atom.xml").read_bytes()


@pytest.mark.parametrize("watcher", [False, True])  # the plan reused / every post read
def test_a_second_save_in_the_same_instant_is_not_missed(site: Site, watcher: bool) -> None:
    # Two saves of one size within the file system's timestamp granularity leave
    # the same stat behind; a build that read the first must not trust it.
    path = site.post("2025-01-01-a.md", "title: First")
    config = site.config()
    build(config, keep_last_good=watcher)
    stamp = path.stat()
    site.post("2025-01-01-a.md", "title: Other")  # same length
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert path.stat().st_mtime_ns == stamp.st_mtime_ns and path.stat().st_size == stamp.st_size
    result = build(config, keep_last_good=watcher)
    assert result.read_all == watcher and result.parsed == 1
    assert b"Other" in (site.output / "atom.xml").read_bytes()


def _three_posts_in_one_category(site: Site) -> Config:
    for day in (1, 2, 3):
        site.post(f"2025-01-0{day}-p{day}.md", f"title: P{day}\ncategories: [C]")
    return site.config()


def test_a_feed_that_failed_to_write_is_written_by_the_watchers_next_build(
    site: Site, tmp_path: Path
) -> None:
    config = _three_posts_in_one_category(site)
    cache = build(config, keep_last_good=True).cache  # the scheduler keeps this in memory
    site.post("2025-01-03-p3.md", "title: P3 edited\ncategories: [C]")
    # A real write failure: a folder stands where the new rss.xml must go.
    (site.output / "rss.xml").unlink()
    (site.output / "rss.xml").mkdir()
    with pytest.raises(OSError):
        build(config, keep_last_good=True, cache=cache)
    (site.output / "rss.xml").rmdir()
    (site.output / "rss.xml").write_bytes(b"old")  # whatever was there before
    build(config, keep_last_good=True, cache=cache)
    assert feeds_of(site) == cold_feeds(site, tmp_path)
    build(config)  # and a plain build from the cache on disk
    assert feeds_of(site) == cold_feeds(site, tmp_path)


def test_a_cache_that_failed_to_save_is_saved_whole_by_the_next_build(
    site: Site, tmp_path: Path
) -> None:
    config = _three_posts_in_one_category(site)
    build(config)
    cache = build(config, keep_last_good=True).cache
    site.post("2025-01-02-p2.md", "title: P2\ncategories: [D]")
    # The index cannot be saved this time: a folder stands where its delta goes.
    delta = config.paths.cache / "build.delta.marshal"
    delta.unlink(missing_ok=True)
    delta.mkdir()
    build(config, keep_last_good=True, cache=cache)
    delta.rmdir()
    site.post("2025-01-03-p3.md", "title: P3 typo fixed\ncategories: [C]")
    build(config, keep_last_good=True, cache=cache)  # saves, and must include P2's move
    site.post("2025-01-02-p2.md", "title: P2\ncategories: [C]", "Back.\n")
    build(config)
    assert feeds_of(site) == cold_feeds(site, tmp_path)


def test_bodies_keep_their_image_and_text_size_and_older_ones_are_never_misread(
    tmp_path: Path,
) -> None:
    import hashlib
    import marshal

    from publisher.build.cachefile import body_name, dump_body, open_bodies, read_body
    from publisher.site.markup import Rendered

    db = open_bodies(tmp_path)
    assert db is not None
    key = ("0" * 32, "https://example.com/a.html 200")
    body = Rendered("<p>x</p>", "x", False, "https://example.com/i.png", 12, 34)
    db.execute("INSERT INTO bodies VALUES (?, ?)", (body_name(key), dump_body(body)))
    assert read_body(db, key) == body
    # The format is part of a body's name: one stored by format 8, under its name
    # then, is not found ...
    old_name = hashlib.blake2b("\0".join(key).encode(), digest_size=16).hexdigest()
    assert old_name != body_name(key)
    # ... and a body of another shape under this format's name is a miss, not a misread.
    old = marshal.dumps(("<p>old</p>", "old", False))
    db.execute("UPDATE bodies SET data = ? WHERE name = ?", (old, body_name(key)))
    assert read_body(db, key) is None
    db.close()


def test_a_cache_of_the_last_format_makes_a_cold_build_with_the_new_fields(
    site: Site, tmp_path: Path
) -> None:
    import marshal

    site.post("2025-01-01-a.md", "title: A\nimage: a.png\nreading_time: 3", "![b](b.png)\n")
    config = site.config()
    build(config)
    index = config.paths.cache / "build.marshal"
    values = list(marshal.loads(index.read_bytes()))
    values[0] = (8, values[0][1])  # as the last format wrote it
    index.write_bytes(marshal.dumps(tuple(values)))
    (site.output / "feed.json").unlink()
    result = build(config)
    assert result.parsed == 1  # the old index was not trusted
    assert feeds_of(site) == cold_feeds(site, tmp_path)

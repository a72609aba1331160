"""The build cache: what a warm build reuses must match what a cold build would make."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from publisher.build import build, settings_key
from publisher.cache import BuildCache

from .conftest import Site


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
    site.post("2025-01-01-a.md", "title: Changed")
    build(config, use_cache=False)  # `publisher build --no-cache`
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
    assert [p.title for p in kept.posts.published] == ["Good"]
    # Fixed again, byte for byte: every feed must be what a cold build makes.
    site.post("2025-01-01-a.md", good, "Good body.\n")
    build(config)
    assert b"MARKER" not in (site.output / "atom.xml").read_bytes()
    assert feeds_of(site) == cold_feeds(site, tmp_path)

"""Watching: which changes matter, which folders are watched, and bursts that settle."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from publisher.config import Config
from publisher.schedule.runlog import logger
from publisher.schedule.watch import Batch, Watcher, change_kind, summarise, watch_targets
from tests.conftest import Site


@pytest.fixture
def config(site: Site) -> Config:
    (site.root / "templates").mkdir()
    return site.config()


def test_change_kind_keeps_posts_config_and_templates_and_drops_the_rest(
    site: Site, config: Config
) -> None:
    root = site.root.resolve()

    def kind(relative: str) -> str | None:
        return change_kind(config, str(root / relative))

    assert kind("config.yaml") == "config"
    assert kind("posts/2026-11-28-hello.md") == "posts"
    assert kind("posts/2025/deep/2025-01-01-old.markdown") == "posts"
    assert kind("posts/2025") == "posts"  # a folder of posts moved or removed
    assert kind("posts") == "posts"
    assert kind("templates/index.html.j2") == "templates"
    assert kind("templates/digest") == "templates"
    # An editor's leftovers, the build's own output and state, unrelated files.
    assert kind("posts/.2026-11-28-hello.md.swp") is None
    assert kind("posts/2026-11-28-hello.md~") is None
    assert kind("posts/4913") is None  # vim's "can I write here" probe
    assert kind("posts/notes.txt") is None
    assert kind("templates/.index.html.j2.swx") is None
    assert kind("public/atom.xml") is None
    assert kind(".publisher/status.json") is None
    assert kind(".publisher-cache/build.pickle") is None
    assert kind("publisher.db-wal") is None
    assert kind("README.md") is None


def test_summarise_sorts_a_burst_and_drops_noise(site: Site, config: Config) -> None:
    root = site.root.resolve()
    batch = summarise(
        config,
        [
            str(root / "posts/b.md"),
            str(root / "posts/.b.md.swp"),
            str(root / "posts/a.md"),
            str(root / "posts/a.md"),
            str(root / "public/rss.xml"),
            str(root / "config.yaml"),
        ],
    )
    assert batch.kinds == {"posts", "config"}
    assert batch.paths == [str(root / p) for p in ("config.yaml", "posts/a.md", "posts/b.md")]
    assert summarise(config, [str(root / "public/rss.xml")]).kinds == set()


def test_watch_targets_are_posts_and_templates_deep_and_the_config_folder_shallow(
    site: Site, config: Config
) -> None:
    root = site.root.resolve()
    targets = watch_targets(config)
    assert targets.recursive == (root / "posts", root / "templates")
    # The site folder itself only one level deep: it may hold .git or vendor/bundle.
    assert targets.shallow == (root,)


def test_a_missing_templates_folder_is_waited_for_one_level_deep(site: Site) -> None:
    root = site.root.resolve()
    site.write_config(paths={"templates": "theme/templates"})
    targets = watch_targets(site.config())
    assert targets.recursive == (root / "posts",)
    assert targets.shallow == (root,)


def test_nested_folders_fold_into_their_parent(site: Site) -> None:
    root = site.root.resolve()
    (site.posts / "_templates").mkdir()
    site.write_config(paths={"templates": "posts/_templates"})
    assert watch_targets(site.config()).recursive == (root / "posts",)


class Collector:
    """Batches handed over by a real Watcher, with a way to wait for one."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.changed = threading.Condition()

    def __call__(self, batch: Batch) -> None:
        with self.changed:
            self.batches.append(batch)
            self.changed.notify_all()

    def wait_for(self, paths: set[str], deadline: float = 10.0) -> None:
        """Wait until every one of ``paths`` was handed over (an event, not a timing)."""
        end = time.monotonic() + deadline
        with self.changed:
            while not paths <= {p for b in self.batches for p in b.paths}:
                left = end - time.monotonic()
                assert left > 0, f"not seen within {deadline}s: {paths}; got {self.batches}"
                self.changed.wait(left)


@pytest.fixture
def watching(config: Config) -> Iterator[Collector]:
    stop = threading.Event()
    collector = Collector()
    watcher = Watcher(lambda: config, collector, stop, logger())
    # start() returns once the watches are in place: nothing written after it is missed.
    assert watcher.start()
    yield collector
    stop.set()
    watcher.join(timeout=10)


def test_a_vim_style_save_is_one_batch_naming_only_the_post(
    config: Config, watching: Collector
) -> None:
    posts = config.paths.posts
    post = posts / "2026-11-28-hello.md"
    # vim with its defaults: probe the folder, write a swap file, write the new
    # text to a temporary name, rename it over the post, clean up.
    (posts / "4913").write_text("")
    (posts / "4913").unlink()
    (posts / ".2026-11-28-hello.md.swp").write_bytes(b"\0" * 4096)
    tmp = posts / ".2026-11-28-hello.md.tmp"
    tmp.write_text("---\ntitle: Hello\ndate: 2026-11-28\n---\nHi\n", "utf-8")
    os.rename(tmp, post)
    (posts / ".2026-11-28-hello.md.swp").unlink()
    watching.wait_for({str(post)})
    assert watching.batches[0].kinds == {"posts"}
    assert watching.batches[0].paths == [str(post)]


def test_a_checkout_of_a_thousand_files_is_one_or_two_batches(
    config: Config, watching: Collector
) -> None:
    folder = config.paths.posts / "2024"
    folder.mkdir()
    for i in range(1000):
        path = folder / f"2024-01-01-post-{i}.md"
        path.write_text(f"---\ntitle: Post {i}\n---\nBody {i}\n", "utf-8")
    # What matters is a batch after the last write: each rebuild reads the whole
    # folder, so the last batch sees every file. (Files written into a brand-new
    # folder before inotify watches it are not reported one by one; the folder is.)
    watching.wait_for({str(path)}, deadline=30)
    # Not one rebuild per file: the burst is handed over once it settles. The
    # bound leaves room for a pause mid-burst on a busy machine.
    assert len(watching.batches) <= 3, [len(b.paths) for b in watching.batches]
    assert sum(len(b.paths) for b in watching.batches) > 900


def test_config_changes_arrive_even_when_saved_by_rename(
    site: Site, config: Config, watching: Collector
) -> None:
    for attempt in range(2):  # the second save proves the first rename did not blind the watch
        tmp = site.root / f".config.yaml.{attempt}"
        tmp.write_text(site.config_path.read_text("utf-8"), "utf-8")
        os.rename(tmp, site.config_path)
        watching.wait_for({str(site.config_path.resolve())})
        assert "config" in watching.batches[-1].kinds
        watching.batches.clear()

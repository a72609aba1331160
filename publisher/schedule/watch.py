"""Watching a site for saves: which paths to watch, which changes matter, when a burst is over.

Two watchfiles watchers run side by side: one recursive over the posts and
templates folders, one not recursive over the folder holding config.yaml.
The config's folder is watched rather than the file because editors save by
writing a temporary file and renaming it over the old one, and a watch on
the old file would go deaf after the first save; it is not watched
recursively because a site folder may hold ``.git``, ``node_modules`` or a
``vendor/bundle`` with thousands of folders that have nothing to say.

Bursts are grouped on the Rust side of watchfiles: a batch is handed over
only once no new change arrived for :data:`SETTLE_MS`, or after
:data:`MAX_BATCH_MS` of continuous changes. A vim save (a test file, a swap
file, a backup, a rename) is one batch a fraction of a second later; a
``git checkout`` of thousands of files is one or two.

What it must never do: turn the build's own writes (``paths.output``,
``paths.cache``, ``paths.state``) into a rebuild.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from publisher.config import Config
from publisher.site.posts import is_post_file

__all__ = [
    "IDLE_MS",
    "MAX_BATCH_MS",
    "SETTLE_MS",
    "Batch",
    "Watcher",
    "change_kind",
    "summarise",
    "watch_targets",
]

# No new change for this long ends a burst. Long enough to cover every step
# of an editor's save, short enough that the feed follows well within a second.
SETTLE_MS = 200
# A burst that never pauses (a large checkout or copy) is still handed over
# this often, so the feeds do not wait for it forever.
MAX_BATCH_MS = 10_000
# How long an idle watch waits before reporting "nothing yet"; only its first
# report matters (the watches are in place), so this is about start-up time.
IDLE_MS = 500

_TEMP_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".tmp", ".bak", ".part", ".crdownload")


@dataclass(frozen=True)
class Targets:
    """What to watch: folders watched recursively, and folders watched one level deep."""

    recursive: tuple[Path, ...]
    shallow: tuple[Path, ...]


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def watch_targets(config: Config) -> Targets:
    """The folders to watch for this config.

    Posts and templates are watched recursively, nested folders folded into
    their parent. The config's folder is watched one level deep, and so is the
    nearest existing parent of a posts or templates folder that does not exist
    yet, so that creating it is noticed (and the watches are then replanned).
    """
    wanted = [config.paths.posts, config.paths.templates]
    deep: list[Path] = []
    for path in sorted({p for p in wanted if p.is_dir()}, key=lambda p: (len(p.parts), str(p))):
        if not any(path.is_relative_to(kept) for kept in deep):
            deep.append(path)
    shallow = {_existing(p) for p in wanted if not p.is_dir()}
    if config.source is not None:
        shallow.add(config.source.resolve().parent)
    return Targets(
        tuple(deep),
        tuple(sorted(p for p in shallow if not any(p.is_relative_to(d) for d in deep))),
    )


def _is_temp(name: str) -> bool:
    return name.startswith((".", "#")) or name.endswith(_TEMP_SUFFIXES) or name == "4913"


def change_kind(config: Config, path: str) -> str | None:
    """What a change to ``path`` means: "config", "posts", "templates" or None (ignore it)."""
    changed = Path(path)
    paths = config.paths
    for own in (paths.output, paths.cache, paths.state):
        # The build's own writes must never trigger another build.
        if changed == own or changed.is_relative_to(own):
            return None
    if config.source is not None and changed == config.source.resolve():
        return "config"
    name = changed.name
    if changed.is_relative_to(paths.posts):
        # A folder of posts renamed or removed arrives as one event for the folder.
        if changed == paths.posts or is_post_file(name) or ("." not in name and not _is_temp(name)):
            return "posts"
        return None
    if changed.is_relative_to(paths.templates) and not _is_temp(name):
        return "templates"
    return None


@dataclass
class Batch:
    """The changes of one settled burst that matter, by kind."""

    kinds: set[str] = field(default_factory=set)
    paths: list[str] = field(default_factory=list)


def summarise(config: Config, changed: Iterable[str]) -> Batch:
    """Sort a burst's changed paths into what they mean; ignored paths are dropped."""
    batch = Batch()
    for path in sorted(set(changed)):
        kind = change_kind(config, path)
        if kind is not None:
            batch.kinds.add(kind)
            batch.paths.append(path)
    return batch


class _Either:
    """Stops a watch when the process stops or the targets must change."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class Watcher:
    """Runs the watchers in threads and hands each settled, relevant burst to ``on_batch``.

    ``config`` is asked again whenever the watches are (re)started, so a config
    reload that moves the posts folder takes effect after :meth:`replan`.
    """

    def __init__(
        self,
        config: Callable[[], Config],
        on_batch: Callable[[Batch], None],
        stop: threading.Event,
        log: logging.Logger,
    ) -> None:
        self._config = config
        self._on_batch = on_batch
        self._stop = stop
        self._log = log
        self._retarget = threading.Event()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self.targets: Targets | None = None

    def start(self, timeout: float = 10.0) -> bool:
        """Start watching and return once every watch is in place (False if that took too long).

        Saves made before the watches exist would go unseen, so "started" must
        mean "watching".
        """
        thread = threading.Thread(target=self._loop, name="publisher-watch", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self._ready.wait(timeout)

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def replan(self) -> None:
        """Restart the watches if the config now asks for other folders (or one appeared)."""
        if self.targets is not None and watch_targets(self._config()) != self.targets:
            self._retarget.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._retarget.clear()
            self.targets = targets = watch_targets(self._config())
            watches = [
                (paths, deep, threading.Event())
                for paths, deep in ((targets.recursive, True), (targets.shallow, False))
                if paths
            ]
            threads = [
                threading.Thread(
                    target=self._watch, args=watch, name="publisher-watch", daemon=True
                )
                for watch in watches
            ]
            for thread in threads:
                thread.start()
            for _paths, _deep, armed in watches:
                armed.wait(10.0)
            self._ready.set()
            for thread in threads:
                thread.join()
            if self._retarget.is_set() and not self._stop.is_set():
                # Saves made while the watches moved were not seen: rebuild once to be sure.
                self._on_batch(Batch({"posts"}, []))

    def _watch(self, paths: tuple[Path, ...], recursive: bool, armed: threading.Event) -> None:
        stop = _Either(self._stop, self._retarget)
        while not stop.is_set():
            try:
                for changes in watchfiles.watch(
                    *paths,
                    watch_filter=None,
                    debounce=MAX_BATCH_MS,
                    step=SETTLE_MS,
                    stop_event=stop,
                    recursive=recursive,
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                    # An empty set every IDLE_MS when nothing happens: the first one
                    # tells that the watches are in place.
                    rust_timeout=IDLE_MS,
                    yield_on_timeout=True,
                ):
                    armed.set()
                    if not changes:
                        continue
                    batch = summarise(self._config(), (path for _change, path in changes))
                    if batch.kinds:
                        self._on_batch(batch)
            except Exception as exc:
                # A watched folder removed under us, or inotify out of watches: say so,
                # wait a moment and watch again rather than going deaf.
                armed.set()
                self._log.error("watch %s failed: %s", ", ".join(map(str, paths)), exc)
                self._stop.wait(2.0)

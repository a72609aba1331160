"""A build's changed feeds to queued pings, and the due pings sent.

:func:`queue_changed` runs right after a build wrote its files; :func:`send_due`
sends what is due, one request at a time with a short timeout, and never raises
for a hub: a hub that fails is a line of :attr:`Report.problems` and its pings
wait for their next try. When one ping to a hub fails, that hub's other due pings
of the round are counted as failed too without being sent, so a hub that is down
costs one timeout a round, not one per feed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from publisher.config import Config
from publisher.feeds.archives import is_page
from publisher.feeds.scopes import FILE_NAMES
from publisher.site.urls import url_join
from publisher.websub import queue
from publisher.websub.ping import DEFAULT_TIMEOUT, ping

__all__ = ["Report", "changed_topics", "queue_changed", "send_due"]

# One process may queue (after a rebuild) while it sends (the retry job): the file's
# read-change-write happens under this lock, the requests outside it.
_LOCK = threading.Lock()
_FEED_FILES = frozenset(FILE_NAMES.values())

Pinger = Callable[..., str | None]


@dataclass
class Report:
    """What one round of :func:`send_due` did."""

    sent: list[queue.Entry] = field(default_factory=list)
    failed: list[queue.Entry] = field(default_factory=list)  # still queued, retried later
    given_up: list[queue.Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per failing hub or give-up


def _path(config: Config) -> Path:
    return config.paths.state / queue.QUEUE_FILE


def changed_topics(config: Config, written: Iterable[str]) -> list[str]:
    """The URLs of the feeds and archive pages among ``written`` (paths in the output folder)."""
    return [
        url_join(config.site.url, "/" + path)
        for path in written
        if PurePosixPath(path).name in _FEED_FILES or is_page(path)
    ]


def queue_changed(config: Config, written: Iterable[str], now: datetime) -> int:
    """Queue a ping to every hub for each feed among ``written``; how many topics changed."""
    hubs = config.feeds.websub_hubs
    topics = changed_topics(config, written)
    if not hubs or not topics:
        return 0
    with _LOCK:
        path = _path(config)
        queue.save(path, queue.add(queue.load(path), hubs, topics, now))
    return len(topics)


def send_due(
    config: Config, now: datetime, *, timeout: float = DEFAULT_TIMEOUT, pinger: Pinger = ping
) -> Report:
    """Send every due ping once; update the queue; never raise for a hub's answer."""
    report = Report()
    path = _path(config)
    hubs = set(config.feeds.websub_hubs)
    with _LOCK:
        if not path.exists():
            return report
        entries = queue.load(path)
        # A hub taken out of the config is not pinged any more.
        kept = [entry for entry in entries if entry.hub in hubs]
        if len(kept) != len(entries):
            queue.save(path, kept)
        todo = queue.due(kept, now)
    if not todo:
        return report
    down: dict[str, str] = {}  # hub -> why its first ping of this round failed
    outcomes: list[tuple[queue.Entry, str | None]] = []
    for entry in todo:
        reason = down.get(entry.hub)
        if reason is None:
            reason = pinger(entry.hub, entry.topic, timeout=timeout)
            if reason is not None:
                down[entry.hub] = reason
        outcomes.append((entry, reason))
    with _LOCK:
        entries = queue.load(path)
        for entry, reason in outcomes:
            if reason is None:
                entries = queue.sent(entries, entry)
                report.sent.append(entry)
                continue
            entries, retried = queue.failed(entries, entry, now)
            if retried is None:
                report.given_up.append(entry)
                report.problems.append(
                    f"WebSub hub {entry.hub}: gave up pinging for {entry.topic}"
                    f" after {entry.attempts + 1} attempts ({reason})"
                )
            else:
                report.failed.append(retried)
        queue.save(path, entries)
    for hub, reason in down.items():
        waiting = [e for e in report.failed if e.hub == hub]
        if waiting:
            soonest = min(e.next_at for e in waiting)
            report.problems.append(
                f"WebSub hub {hub} failed: {reason}; {len(waiting)} ping(s) queued,"
                f" next try at {soonest.isoformat(timespec='seconds')}"
            )
    return report

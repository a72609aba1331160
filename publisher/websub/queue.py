"""The WebSub ping queue: pure decisions, and its file in the state folder.

An entry is one ping still to send: ``{hub, topic, attempts, next_at}``. A build
that changed a feed adds one entry per hub (none if that ping is queued already);
a ping that went through is dropped; a failed one waits :func:`backoff` (one
minute, doubling, at most six hours) and is given up after :data:`MAX_ATTEMPTS`.

The decisions (:func:`add`, :func:`due`, :func:`sent`, :func:`failed`) take
``now`` and touch nothing; :func:`load` and :func:`save` are the file, written
atomically; a missing or unreadable file reads as an empty queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from publisher.build.output import atomic_write

__all__ = [
    "FIRST_DELAY",
    "MAX_ATTEMPTS",
    "MAX_DELAY",
    "QUEUE_FILE",
    "Entry",
    "add",
    "backoff",
    "due",
    "failed",
    "load",
    "save",
    "sent",
]

QUEUE_FILE = "websub.json"
FIRST_DELAY = timedelta(minutes=1)
MAX_DELAY = timedelta(hours=6)
MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class Entry:
    """One ping to send: ``hub.url=topic`` to ``hub``, not before ``next_at``."""

    hub: str
    topic: str
    attempts: int
    next_at: datetime

    @property
    def key(self) -> tuple[str, str]:
        return (self.hub, self.topic)


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 1 min, 2, 4, ... at most 6 h."""
    if attempts < 1:
        return timedelta(0)
    # Capped before the power grows large: 2**9 minutes is past the cap already.
    delay: timedelta = FIRST_DELAY * (2 ** min(attempts - 1, 20))
    return min(delay, MAX_DELAY)


def add(
    entries: Sequence[Entry], hubs: Iterable[str], topics: Iterable[str], now: datetime
) -> list[Entry]:
    """``entries`` with a ping due ``now`` for each hub and topic that is not queued yet.

    A ping already queued stays as it is (its backoff too): one ping tells the
    hub that the topic changed, however many builds changed it meanwhile.
    """
    result = list(entries)
    queued = {entry.key for entry in result}
    for topic in topics:
        for hub in hubs:
            if (hub, topic) not in queued:
                queued.add((hub, topic))
                result.append(Entry(hub, topic, 0, now))
    return result


def due(entries: Sequence[Entry], now: datetime) -> list[Entry]:
    """The entries whose time has come, soonest first."""
    return sorted((e for e in entries if e.next_at <= now), key=lambda e: e.next_at)


def sent(entries: Sequence[Entry], done: Entry) -> list[Entry]:
    """``entries`` without ``done``, whose ping went through."""
    return [entry for entry in entries if entry.key != done.key]


def failed(
    entries: Sequence[Entry], entry: Entry, now: datetime
) -> tuple[list[Entry], Entry | None]:
    """``entries`` after ``entry``'s ping failed ``now``, and the entry as retried.

    The retried entry is None when it was given up (after :data:`MAX_ATTEMPTS`).
    """
    attempts = entry.attempts + 1
    rest = [e for e in entries if e.key != entry.key]
    if attempts >= MAX_ATTEMPTS:
        return rest, None
    retried = replace(entry, attempts=attempts, next_at=now + backoff(attempts))
    return [*rest, retried], retried


def _entry(raw: Any) -> Entry | None:
    try:
        next_at = datetime.fromisoformat(raw["next_at"])
        if next_at.tzinfo is None:
            return None
        hub, topic, attempts = raw["hub"], raw["topic"], raw["attempts"]
        if not (isinstance(hub, str) and isinstance(topic, str) and isinstance(attempts, int)):
            return None
        return Entry(hub, topic, attempts, next_at)
    except (KeyError, TypeError, ValueError):
        return None


def load(path: Path) -> list[Entry]:
    """The queue in ``path``; empty when the file is missing or unreadable."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return []
    items = raw.get("pings") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        return []
    return [entry for entry in map(_entry, items) if entry is not None]


def save(path: Path, entries: Sequence[Entry]) -> None:
    """Replace the queue file atomically."""
    document = {
        "pings": [
            {
                "hub": entry.hub,
                "topic": entry.topic,
                "attempts": entry.attempts,
                "next_at": entry.next_at.isoformat(),
            }
            for entry in entries
        ]
    }
    atomic_write(path, (json.dumps(document, indent=2) + "\n").encode("utf-8"))

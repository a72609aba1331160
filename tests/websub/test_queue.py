"""The ping queue's decisions, with the time given: due, backoff, giving up; and its file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from publisher.websub import queue
from publisher.websub.queue import Entry

NOW = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
HUB = "https://hub.example/"
OTHER = "https://other.example/hub"
FEED = "https://example.com/atom.xml"


def test_backoff_starts_at_a_minute_doubles_and_stops_at_six_hours() -> None:
    assert [queue.backoff(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert queue.backoff(9) == timedelta(minutes=256)
    assert queue.backoff(10) == timedelta(hours=6)
    assert queue.backoff(1000) == timedelta(hours=6)


def test_add_queues_one_ping_per_hub_and_topic_due_now_and_never_twice() -> None:
    entries = queue.add([], [HUB, OTHER], [FEED], NOW)
    assert entries == [Entry(HUB, FEED, 0, NOW), Entry(OTHER, FEED, 0, NOW)]
    waiting = Entry(HUB, FEED, 3, NOW + timedelta(minutes=8))
    again = queue.add([waiting], [HUB], [FEED, "https://example.com/rss.xml"], NOW)
    assert again == [waiting, Entry(HUB, "https://example.com/rss.xml", 0, NOW)]


def test_due_takes_the_entries_whose_time_came_soonest_first() -> None:
    later = Entry(HUB, FEED, 1, NOW + timedelta(seconds=1))
    now = Entry(OTHER, FEED, 0, NOW)
    earlier = Entry(HUB, "https://example.com/feed.json", 2, NOW - timedelta(minutes=1))
    assert queue.due([later, now, earlier], NOW) == [earlier, now]
    assert queue.due([later], NOW + timedelta(seconds=1)) == [later]


def test_a_sent_ping_leaves_the_queue() -> None:
    one, two = Entry(HUB, FEED, 0, NOW), Entry(OTHER, FEED, 0, NOW)
    assert queue.sent([one, two], one) == [two]


def test_a_failed_ping_waits_longer_each_time_and_is_given_up_at_last() -> None:
    entry = Entry(HUB, FEED, 0, NOW)
    entries, retried = queue.failed([entry], entry, NOW)
    assert retried == Entry(HUB, FEED, 1, NOW + timedelta(minutes=1))
    assert entries == [retried]
    assert queue.due(entries, NOW + timedelta(seconds=59)) == []
    entries, retried = queue.failed(entries, entries[0], NOW)
    assert retried is not None and retried.next_at == NOW + timedelta(minutes=2)
    last = Entry(HUB, FEED, queue.MAX_ATTEMPTS - 1, NOW)
    assert queue.failed([last], last, NOW) == ([], None)


def test_the_file_round_trips_and_a_missing_or_corrupt_one_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "state" / queue.QUEUE_FILE
    assert queue.load(path) == []
    entries = [Entry(HUB, FEED, 2, NOW + timedelta(minutes=2)), Entry(OTHER, FEED, 0, NOW)]
    queue.save(path, entries)
    assert queue.load(path) == entries
    path.write_text("{not json", "utf-8")
    assert queue.load(path) == []
    path.write_text('{"pings": [{"hub": 1}, "x"]}', "utf-8")
    assert queue.load(path) == []

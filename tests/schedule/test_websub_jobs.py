"""WebSub in ``publisher run``: a rebuild queues the pings, the websub job sends and retries.

A real hub on 127.0.0.1 records the pings; the scheduler holds its jobs paused
and the test runs them, moving the clock by hand.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from publisher.schedule.runner import Runner
from publisher.schedule.websub_jobs import WEBSUB_EXECUTOR
from publisher.websub import queue
from tests.conftest import Site
from tests.websub.hub_server import Hub, hub_server

NOW = datetime(2026, 11, 28, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def hub() -> Iterator[Hub]:
    with hub_server() as running:
        yield running


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for runner in made:
        if runner.scheduler.running:
            runner.scheduler.shutdown(wait=False)


def _runner(runners: list[Runner], site: Site, clock: Clock) -> Runner:
    runner = Runner(site.config(), clock=clock, digests=False)
    runner.scheduler.start(paused=True)
    runners.append(runner)
    return runner


def test_a_rebuild_queues_its_pings_and_the_websub_job_sends_them(
    site: Site, hub: Hub, runners: list[Runner]
) -> None:
    site.write_config(feeds={"websub_hubs": [hub.url], "formats": ["atom", "rss"]})
    site.post("2026-11-01-a.md", "title: A\ndate: 2026-11-01 09:00\ncategories: [news]")
    clock = Clock(NOW)
    runner = _runner(runners, site, clock)
    runner.rebuild("build", "start")
    # The rebuild only queued them; the sending is a job on its own executor.
    assert hub.topics() == []
    job = runner.scheduler.get_job("websub-now")
    assert job is not None and job.executor == WEBSUB_EXECUTOR
    assert len(queue.load(site.root / ".publisher" / queue.QUEUE_FILE)) == 4

    report = runner.websub.send()
    assert report is not None and len(report.sent) == 4
    assert sorted(hub.topics()) == [
        "https://example.com/atom.xml",
        "https://example.com/categories/news/atom.xml",
        "https://example.com/categories/news/rss.xml",
        "https://example.com/rss.xml",
    ]

    hub.clear()
    runner.rebuild("build", "nothing changed")
    runner.websub.send()
    assert hub.topics() == []

    runner.websub.plan()
    retry = runner.scheduler.get_job("websub")
    assert retry is not None and retry.executor == WEBSUB_EXECUTOR


def test_a_ping_refused_with_503_is_retried_after_its_backoff_even_after_a_restart(
    site: Site, hub: Hub, runners: list[Runner]
) -> None:
    site.write_config(feeds={"websub_hubs": [hub.url], "formats": ["json"], "per_category": False})
    site.post("2026-11-01-a.md", "title: A\ndate: 2026-11-01 09:00")
    clock = Clock(NOW)
    runner = _runner(runners, site, clock)
    hub.fail_next = 1
    runner.rebuild("build", "start")
    report = runner.websub.send()
    assert report is not None and len(report.failed) == 1 and report.problems
    assert hub.topics() == []

    clock.now = NOW + timedelta(seconds=30)
    runner.websub.send()
    assert hub.topics() == []  # not due yet

    runner.stop()
    # A new process on the same state folder sends what the last one left queued.
    later = _runner(runners, site, Clock(NOW + timedelta(minutes=1)))
    report = later.websub.send()
    assert report is not None and len(report.sent) == 1
    assert hub.topics() == ["https://example.com/feed.json"]

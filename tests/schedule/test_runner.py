"""The Runner's jobs, called directly with an injected clock, a real store and real builds.

The scheduler is started paused, so every job it would run is called here by
hand at the moment the test chooses: the decisions and their effects are
checked without waiting for anything.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import feedparser
import pytest

from publisher.config import Config
from publisher.errors import TemporarySendError
from publisher.mail import Backend, MemoryBackend
from publisher.schedule.lock import DIGEST_LOCK, StateLock, lock_path
from publisher.schedule.runlog import LOGGER_NAME, setup_logging
from publisher.schedule.runner import Runner
from publisher.schedule.status import read_status
from publisher.store import Store
from tests.conftest import Site

TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")
# Monday 2026-11-23 08:00 JST is when the default schedule "0 8 * * mon" fires.
DUE = datetime(2026, 11, 23, 8, tzinfo=TOKYO)
NOW = datetime(2026, 11, 28, 10, tzinfo=TOKYO)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now.astimezone(UTC)


class Log:
    """What ``publisher run`` writes to its log, without the timestamps."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def lines(self) -> list[str]:
        return [line.split(" ", 1)[1] for line in self.stream.getvalue().splitlines()]

    def find(self, pattern: str) -> list[str]:
        return [line for line in self.lines if re.search(pattern, line)]


@pytest.fixture
def log() -> Iterator[Log]:
    captured = Log()
    setup_logging(stream=captured.stream)
    yield captured
    for name in (LOGGER_NAME, "apscheduler"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for runner in made:
        if runner.scheduler.running:
            runner.scheduler.shutdown(wait=False)


def start(
    runners: list[Runner],
    config: Config,
    clock: Clock,
    *,
    digests: bool = True,
    backend_factory: Callable[[Config], Backend] | None = None,
) -> Runner:
    """A Runner whose scheduler holds its jobs but runs none (the test runs them)."""
    runner = Runner(config, clock=clock, digests=digests, backend_factory=backend_factory)
    runner.scheduler.start(paused=True)
    runners.append(runner)
    return runner


def entries(site: Site) -> dict[str, str]:
    """Title -> content of every entry in the site's Atom feed."""
    parsed = feedparser.parse((site.output / "atom.xml").read_bytes())
    return {e.title: e.content[0].value if "content" in e else "" for e in parsed.entries}


# --- builds --------------------------------------------------------------------------------


def test_a_post_broken_by_an_edit_keeps_its_last_good_version_until_fixed(
    site: Site, log: Log, runners: list[Runner]
) -> None:
    alpha = site.post("2026-11-01-alpha.md", "title: Alpha\ndate: 2026-11-01 09:00", "Good.\n")
    site.post("2026-11-02-beta.md", "title: Beta\ndate: 2026-11-02 09:00", "Beta.\n")
    runner = start(runners, site.config(), Clock(NOW), digests=False)
    runner.rebuild("build", "start")
    assert "Good." in entries(site)["Alpha"]

    alpha.write_text("---\ntitle: [Alpha\ndate: 2026-11-01 09:00\n---\nBROKEN body!\n", "utf-8")
    result = runner.rebuild("build", "posts/2026-11-01-alpha.md changed")
    assert result is not None and not result.errors and len(result.stale) == 1
    assert "Good." in entries(site)["Alpha"]
    [line] = log.find(r"\(kept its last good version\)$")
    assert re.fullmatch(
        r"warning: posts/2026-11-01-alpha\.md:\d+:\d+: front matter: .* \(kept its last good"
        r" version\)",
        line,
    )

    # Another post changes, so the feed is written again: still the good Alpha.
    site.post("2026-11-02-beta.md", "title: Beta two\ndate: 2026-11-02 09:00", "Beta 2.\n")
    runner.rebuild("build", "posts/2026-11-02-beta.md changed")
    shown = entries(site)
    assert "Beta two" in shown
    assert "Good." in shown["Alpha"] and "BROKEN" not in shown["Alpha"]

    site.post("2026-11-01-alpha.md", "title: Alpha fixed\ndate: 2026-11-01 09:00", "Fixed.\n")
    result = runner.rebuild("build", "posts/2026-11-01-alpha.md changed")
    assert result is not None and not result.stale
    assert "Fixed." in entries(site)["Alpha fixed"]
    assert "Alpha" not in entries(site)
    assert log.find(r"^build ok in \d+\.\d\ds: 2 posts published, .* \(posts/2026-11-01-alpha")


def test_a_failed_build_is_logged_recorded_and_the_next_one_works(
    site: Site, log: Log, runners: list[Runner]
) -> None:
    site.post("2026-11-01-alpha.md", "title: Alpha\ndate: 2026-11-01 09:00")
    (site.output / "atom.xml").mkdir(parents=True)  # in the way of the feed
    runner = start(runners, site.config(), Clock(NOW), digests=False)
    assert runner.rebuild("build", "start") is None
    [line] = log.find("^error: build failed")
    assert "atom.xml" in line and line.endswith("(start)")
    record = read_status(site.config())
    assert record is not None and record.result == "failed" and record.by == "run"

    (site.output / "atom.xml").rmdir()
    assert runner.rebuild("build", "posts/2026-11-01-alpha.md changed") is not None
    assert "Alpha" in entries(site)


def test_a_future_post_appears_at_its_time_with_nobody_touching_anything(
    site: Site, log: Log, runners: list[Runner]
) -> None:
    site.post("2026-11-01-old.md", "title: Old\ndate: 2026-11-01 09:00")
    site.post("2026-11-28-noon.md", "title: Noon\ndate: 2026-11-28 12:00")
    site.post("2026-12-24-eve.md", "title: Eve\ndate: 2026-12-24 18:00")
    clock = Clock(NOW)
    runner = start(runners, site.config(), clock, digests=False)
    runner.rebuild("build", "start")
    assert set(entries(site)) == {"Old"}
    job = runner.scheduler.get_job("publish")
    assert job.next_run_time == datetime(2026, 11, 28, 12, tzinfo=TOKYO)

    clock.now = job.next_run_time  # the date job fires
    job.func(*job.args)
    assert set(entries(site)) == {"Old", "Noon"}
    assert log.find(r"^publish ok in .* \(due: posts/2026-11-28-noon\.md\)$")
    # ... and the next one is planned.
    job = runner.scheduler.get_job("publish")
    assert job.next_run_time == datetime(2026, 12, 24, 18, tzinfo=TOKYO)
    status = read_status(site.config())
    assert status is not None and [p.source for p in status.scheduled] == [
        "posts/2026-12-24-eve.md"
    ]

    # Deleting the last future post removes the job instead of leaving a stale one.
    (site.posts / "2026-12-24-eve.md").unlink()
    runner.rebuild("build", "posts/2026-12-24-eve.md changed")
    assert runner.scheduler.get_job("publish") is None


def test_a_bad_config_is_logged_and_the_old_one_kept(
    site: Site, log: Log, runners: list[Runner]
) -> None:
    runner = start(runners, site.config(), Clock(NOW), digests=False)
    old = runner.config
    site.write_config(digest={"schedule": "0 8 * *"}, feeds={"max_items": "ten"})
    assert runner.reload_config() is False
    assert runner.config is old
    assert log.find(r"^error: config rejected in .*: kept the previous config$")
    assert log.find(r"^error: .*config\.yaml: digest\.schedule: expected 5 fields")
    assert log.find(r"^error: .*config\.yaml: feeds\.max_items: must be a positive integer")

    site.write_config(digest={"schedule": "0 9 * * tue"}, feeds={"max_items": 5})
    assert runner.reload_config() is True
    assert runner.config.feeds.max_items == 5
    assert log.find(r"^config reloaded in ")


# --- digests -------------------------------------------------------------------------------


@pytest.fixture
def mailing(site: Site, monkeypatch: pytest.MonkeyPatch) -> Site:
    """The site with a sender, a secret and one reader who joined at the start of November."""
    monkeypatch.setenv("PUBLISHER_SECRET", "scheduler test secret")
    site.write_config(digest={"from": "news@example.com"})
    with Store.open(site.config()) as store:
        store.add_subscriber("reader@example.org", now=datetime(2026, 11, 1, tzinfo=UTC))
    site.post("2026-11-20-news.md", "title: News\ndate: 2026-11-20 09:00")
    return site


def action(runner: Runner, trigger: str) -> str:
    """Run the digest job as the scheduler would; what it decided to do."""
    decision = runner.digest_job(trigger)
    assert decision is not None, "the digest job failed: see the log"
    return decision.action


def text_of(message: EmailMessage) -> str:
    """The plain-text body a reader sees."""
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def recipients(backend: MemoryBackend) -> list[str]:
    return [str(m["To"]) for m in backend.messages]


def run_of(site: Site, key: str) -> tuple[str, str] | None:
    with Store.open(site.config()) as store:
        run = store.get_run(key)
    return None if run is None else (run.status, run.note)


def test_a_digest_missed_while_down_is_sent_once_at_start_and_never_again(
    mailing: Site, log: Log, runners: list[Runner]
) -> None:
    backend = MemoryBackend()
    clock = Clock(DUE + timedelta(hours=2))
    first = start(runners, mailing.config(), clock, backend_factory=lambda _c: backend)
    decision = first.digest_job("catch-up")
    assert decision is not None and decision.action == "send"
    assert recipients(backend) == ["reader@example.org"]
    assert run_of(mailing, "2026-W48") == ("done", "")
    assert log.find(
        r"^digest sent in .*: 2026-W48 .* 2h00m late: 1 sent, 0 skipped, .*\(catch-up\)$"
    )

    # The scheduled fire of the same period, then a restart: nothing more.
    assert action(first, "schedule") == "nothing"
    clock.now += timedelta(hours=1)
    second = start(runners, mailing.config(), clock, backend_factory=lambda _c: backend)
    assert action(second, "catch-up") == "nothing"
    assert recipients(backend) == ["reader@example.org"]
    assert log.find(r"^digest nothing in .*: 2026-W48 .* already done \(catch-up\)$")


def test_a_digest_missed_beyond_max_lateness_is_skipped_and_the_skip_recorded(
    mailing: Site, log: Log, runners: list[Runner]
) -> None:
    backend = MemoryBackend()
    clock = Clock(DUE + timedelta(hours=30))
    runner = start(runners, mailing.config(), clock, backend_factory=lambda _c: backend)
    assert action(runner, "catch-up") == "skip"
    assert backend.messages == []
    status, note = run_of(mailing, "2026-W48") or ("", "")
    assert status == "skipped"
    assert note.endswith("30h00m late, beyond digest.max_lateness 24h00m")
    assert log.find(r"^warning: digest skipped in .*: 2026-W48 .* was missed: 30h00m late")

    restarted = start(runners, mailing.config(), clock, backend_factory=lambda _c: backend)
    assert action(restarted, "catch-up") == "nothing"
    assert backend.messages == []


class StopAfterFirst(MemoryBackend):
    """Accepts one message, then asks the runner to stop (as SIGTERM would)."""

    def __init__(self, runner: list[Runner]) -> None:
        super().__init__()
        self.runner = runner

    def send(self, message: EmailMessage) -> None:
        super().send(message)
        self.runner[0].stop_event.set()


def test_a_run_interrupted_mid_send_resumes_at_the_next_start(
    mailing: Site, log: Log, runners: list[Runner]
) -> None:
    with Store.open(mailing.config()) as store:
        for name in ("second", "third"):
            store.add_subscriber(f"{name}@example.org", now=datetime(2026, 11, 1, tzinfo=UTC))
    clock = Clock(DUE + timedelta(minutes=1))
    holder: list[Runner] = []
    stopping = StopAfterFirst(holder)
    first = start(runners, mailing.config(), clock, backend_factory=lambda _c: stopping)
    holder.append(first)
    first.digest_job("schedule")
    assert len(stopping.messages) == 1
    assert run_of(mailing, "2026-W48") == ("running", "")
    assert log.find(r"^warning: digest stopped in .*: 2026-W48: stopped on request; unsent")

    backend = MemoryBackend()
    clock.now += timedelta(days=2)  # restarted much later: an interrupted run still completes
    second = start(runners, mailing.config(), clock, backend_factory=lambda _c: backend)
    assert action(second, "catch-up") == "resume"
    everyone = recipients(stopping) + recipients(backend)
    assert sorted(everyone) == ["reader@example.org", "second@example.org", "third@example.org"]
    assert run_of(mailing, "2026-W48") == ("done", "")
    assert log.find(r"^digest resumed in .*: 2 sent, ")


def test_messages_a_server_deferred_are_retried_later_within_max_lateness(
    mailing: Site, log: Log, runners: list[Runner]
) -> None:
    backend = MemoryBackend()
    backend.fail_for("reader@example.org", TemporarySendError("451 try again later"), times=1)
    clock = Clock(DUE)
    runner = start(runners, mailing.config(), clock, backend_factory=lambda _c: backend)
    runner.digest_job("schedule")
    assert backend.messages == []
    assert run_of(mailing, "2026-W48") == ("failed", "")
    retry = runner.scheduler.get_job("digest-retry")
    assert retry.next_run_time == DUE + timedelta(minutes=15)
    assert log.find(r"^warning: reader@example\.org: failed for now \(will retry\): 451")

    clock.now = retry.next_run_time
    retry.func(*retry.args)
    assert recipients(backend) == ["reader@example.org"]
    assert run_of(mailing, "2026-W48") == ("done", "")


def test_an_edited_schedule_sends_nothing_more_in_the_same_week(
    mailing: Site, log: Log, runners: list[Runner]
) -> None:
    backend = MemoryBackend()
    clock = Clock(DUE)
    runner = start(runners, mailing.config(), clock, backend_factory=lambda _c: backend)
    runner.digest_job("schedule")
    assert len(backend.messages) == 1

    mailing.post("2026-11-24-tuesday.md", "title: Tuesday\ndate: 2026-11-24 09:00")
    runner.plan_digests(catch_up=False)
    mailing.write_config(digest={"schedule": "0 18 * * wed"})
    assert runner.reload_config()
    # The cron job follows the new schedule, and a check of the period is queued.
    assert "day_of_week='wed', hour='18', minute='0'" in str(
        runner.scheduler.get_job("digest").trigger
    )
    assert runner.scheduler.get_job("digest-catch-up") is not None
    assert log.find(r"^config reloaded in .*: digest schedule re-planned$")
    clock.now = datetime(2026, 11, 25, 18, tzinfo=TOKYO)  # Wednesday of the same ISO week
    assert action(runner, "schedule") == "nothing"
    assert len(backend.messages) == 1
    clock.now += timedelta(days=7)
    assert action(runner, "schedule") == "send"
    assert len(backend.messages) == 2
    assert "Tuesday" in text_of(backend.messages[1])


def test_the_fall_back_night_fires_twice_and_sends_once(
    mailing: Site, log: Log, runners: list[Runner]
) -> None:
    mailing.write_config(site={"timezone": "Europe/Berlin"}, digest={"schedule": "30 2 * * *"})
    # A post that appears between the two 02:30s: it must wait for the next day's digest.
    mailing.post("2026-10-25-between.md", "title: Between\ndate: 2026-10-25T02:45:00+02:00")
    mailing.post("2026-10-24-saturday.md", "title: Saturday\ndate: 2026-10-24 12:00")
    backend = MemoryBackend()
    config = mailing.config()
    clock = Clock(datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN))  # CEST
    runner = start(runners, config, clock, backend_factory=lambda _c: backend)
    with Store.open(config) as store:
        store.set_status(1, "active", now=datetime(2026, 10, 1, tzinfo=UTC))
    assert action(runner, "schedule") == "send"
    clock.now = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)  # CET, an hour later
    assert action(runner, "schedule") == "nothing"
    assert len(backend.messages) == 1
    clock.now = datetime(2026, 10, 26, 2, 30, tzinfo=BERLIN)
    assert action(runner, "schedule") == "send"
    assert len(backend.messages) == 2
    assert "Saturday" in text_of(backend.messages[0])
    assert "Between" not in text_of(backend.messages[0])
    assert "Between" in text_of(backend.messages[1])


def test_a_digest_that_cannot_be_sent_is_logged_with_the_way_out_and_records_nothing(
    site: Site, log: Log, runners: list[Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "scheduler test secret")
    backend = MemoryBackend()
    runner = start(runners, site.config(), Clock(DUE), backend_factory=lambda _c: backend)
    assert runner.digest_job("schedule") is None  # no digest.from configured
    [line] = log.find(r"^error: digest failed")
    assert "digest.from: is required" in line
    assert line.endswith("(to only build feeds: publisher run --no-digest) (schedule)")
    assert run_of(site, "2026-W48") is None  # nothing half-started to resume later


def test_a_digest_another_process_is_sending_is_looked_at_again_later(
    mailing: Site, log: Log, runners: list[Runner]
) -> None:
    backend = MemoryBackend()
    clock = Clock(DUE)
    config = mailing.config()
    runner = start(runners, config, clock, backend_factory=lambda _c: backend)
    with StateLock(lock_path(config, DIGEST_LOCK), "a digest is being sent"):
        assert runner.digest_job("schedule") is None
    assert backend.messages == []
    [line] = log.find(r"^warning: digest busy in ")
    assert re.search(rf"a digest is being sent \(pid {os.getpid()}\); looking again at ", line)
    retry = runner.scheduler.get_job("digest-retry")
    assert retry.next_run_time == DUE + timedelta(minutes=5)

    clock.now = retry.next_run_time
    retry.func(*retry.args)
    assert recipients(backend) == ["reader@example.org"]

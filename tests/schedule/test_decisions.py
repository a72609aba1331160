"""The scheduler's decisions, driven with plain datetimes: no threads, no waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Config, parse_config
from publisher.digest.period import Period, period_at, schedule_trigger
from publisher.schedule.catchup import catch_up_decision, lateness
from publisher.schedule.plans import publish_plan, retry_time
from publisher.site.posts import Post, split_posts
from publisher.store import DigestRun

BERLIN = ZoneInfo("Europe/Berlin")
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def berlin_config(schedule: str, max_lateness: str = "24h") -> Config:
    raw = {
        "site": {"title": "T", "url": "https://example.com", "timezone": "Europe/Berlin"},
        "digest": {"schedule": schedule, "max_lateness": max_lateness},
    }
    return parse_config(raw, Path("/nonexistent/site"))


def run(key: str, status: str, due: datetime) -> DigestRun:
    return DigestRun(key, due, due, None if status == "running" else due, status, 0, 0, 0, 0, "")


MONDAY = datetime(2026, 11, 30, 8, tzinfo=BERLIN)
PERIOD = Period("2026-W49", MONDAY)


# --- catch_up_decision ----------------------------------------------------------------------


def test_a_digest_missed_by_less_than_max_lateness_is_sent() -> None:
    decision = catch_up_decision(PERIOD, MONDAY + 23 * HOUR, timedelta(hours=24), None)
    assert decision.action == "send"
    assert decision.reason.startswith("2026-W49 (due 2026-11-30T08:00:00+01:00), 23h00m late")


def test_a_digest_missed_by_max_lateness_or_more_is_skipped_with_the_reason() -> None:
    decision = catch_up_decision(PERIOD, MONDAY + 24 * HOUR, timedelta(hours=24), None)
    assert decision.action == "skip"
    assert decision.reason == (
        "2026-W49 (due 2026-11-30T08:00:00+01:00) was missed: 24h00m late,"
        " beyond digest.max_lateness 24h00m"
    )


def test_a_period_done_or_skipped_is_left_alone_however_early() -> None:
    for status in ("done", "skipped"):
        decision = catch_up_decision(
            PERIOD, MONDAY, timedelta(hours=24), run("2026-W49", status, MONDAY)
        )
        assert decision.action == "nothing"
        assert decision.reason.endswith(f"already {status}")


def test_an_interrupted_run_is_resumed_even_when_late() -> None:
    interrupted = run("2026-W49", "running", MONDAY)
    decision = catch_up_decision(PERIOD, MONDAY + 3 * DAY, timedelta(hours=24), interrupted)
    assert decision.action == "resume"


def test_a_failed_run_is_retried_only_within_max_lateness() -> None:
    failed = run("2026-W49", "failed", MONDAY)
    assert catch_up_decision(PERIOD, MONDAY + HOUR, timedelta(hours=24), failed).action == "send"
    late = catch_up_decision(PERIOD, MONDAY + 2 * DAY, timedelta(hours=24), failed)
    assert late.action == "nothing"
    assert "not retried" in late.reason


def test_nothing_to_do_before_the_schedule_ever_fired() -> None:
    decision = catch_up_decision(None, MONDAY, timedelta(hours=24), None)
    assert decision.action == "nothing"


# --- daylight saving time: lateness is real elapsed time --------------------------------------


def test_lateness_counts_real_time_across_the_fall_back_overlap() -> None:
    first = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)  # CEST, +02:00
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)  # CET, +01:00
    assert second - first == timedelta(0)  # what naive wall-clock arithmetic says
    assert lateness(first, second) == HOUR


def test_spring_forward_week_a_missed_digest_is_measured_in_real_hours() -> None:
    # Sunday 2026-03-29 01:30 CET fires; the clocks jump 02:00 -> 03:00 that night.
    config = berlin_config("30 1 * * sun", max_lateness="23h")
    now = datetime(2026, 3, 30, 1, 0, tzinfo=BERLIN)  # CEST: 22h30m later, 23h30m on the wall
    period = period_at(config, now)
    assert period == Period("2026-W13", datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN))
    decision = catch_up_decision(period, now, config.digest.max_lateness, None)
    assert decision.action == "send"
    assert "22h30m late" in decision.reason


def test_fall_back_week_a_missed_digest_is_measured_in_real_hours() -> None:
    # Sunday 2026-10-25 01:30 CEST fires; 02:00-03:00 repeats that night.
    config = berlin_config("30 1 * * sun", max_lateness="24h")
    now = datetime(2026, 10, 26, 0, 45, tzinfo=BERLIN)  # CET: 24h15m later, 23h15m on the wall
    period = period_at(config, now)
    assert period is not None and period.key == "2026-W43"
    decision = catch_up_decision(period, now, config.digest.max_lateness, None)
    assert decision.action == "skip"
    assert "24h15m late" in decision.reason


def fires(config: Config, start: datetime, end: datetime) -> list[datetime]:
    """Every moment the schedule fires in [start, end), as the running scheduler sees them."""
    trigger = schedule_trigger(config)
    moments: list[datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end:
        moments.append(fire)
        fire = trigger.get_next_fire_time(fire, fire)
    return moments


def simulate(
    config: Config, moments: list[datetime], runs: dict[str, DigestRun] | None = None
) -> list[str]:
    """Fire the digest job at each moment against a record of runs (kept in ``runs``).

    Returns the period keys that were sent, in order: a key appearing twice
    is a period that got two digests.
    """
    runs = {} if runs is None else runs
    sent: list[str] = []
    for now in moments:
        period = period_at(config, now)
        assert period is not None
        decision = catch_up_decision(period, now, config.digest.max_lateness, runs.get(period.key))
        if decision.action in ("send", "resume"):
            sent.append(period.key)
            runs[period.key] = run(period.key, "done", period.due)
    return sent


def test_fall_back_night_fires_twice_but_the_period_gets_one_digest() -> None:
    config = berlin_config("30 2 * * *")
    moments = fires(
        config, datetime(2026, 10, 24, 12, tzinfo=BERLIN), datetime(2026, 10, 27, tzinfo=BERLIN)
    )
    # APScheduler fires at 02:30 CEST and again at 02:30 CET, an hour later.
    assert [m.astimezone(UTC).strftime("%d %H:%M") for m in moments] == [
        "25 00:30",
        "25 01:30",
        "26 01:30",
    ]
    assert simulate(config, moments) == ["2026-10-25", "2026-10-26"]


def test_spring_forward_night_fires_once_and_sends_once() -> None:
    config = berlin_config("30 2 * * *")
    moments = fires(
        config, datetime(2026, 3, 28, 12, tzinfo=BERLIN), datetime(2026, 3, 31, tzinfo=BERLIN)
    )
    # 02:30 does not exist on 2026-03-29: it fires at the same instant an hour "early" in CET.
    assert [m.astimezone(UTC).strftime("%d %H:%M") for m in moments] == [
        "29 01:30",
        "30 00:30",
    ]
    assert simulate(config, moments) == ["2026-03-29", "2026-03-30"]


@pytest.mark.parametrize(
    ("start", "end", "weeks"),
    [
        (
            datetime(2026, 3, 20, tzinfo=BERLIN),
            datetime(2026, 4, 10, tzinfo=BERLIN),
            ["2026-W13", "2026-W14", "2026-W15"],
        ),
        (
            datetime(2026, 10, 16, tzinfo=BERLIN),
            datetime(2026, 11, 6, tzinfo=BERLIN),
            ["2026-W43", "2026-W44", "2026-W45"],
        ),
    ],
)
def test_every_fire_and_every_hour_of_both_dst_weeks_never_sends_a_week_twice(
    start: datetime, end: datetime, weeks: list[str]
) -> None:
    # The job fires on schedule and the process also restarts every hour, each
    # restart running the catch-up: still one digest per ISO week.
    config = berlin_config("0 8 * * mon")
    hours = [start + timedelta(hours=h) for h in range(int((end - start) / HOUR))]
    moments = sorted(fires(config, start, end) + hours)
    assert simulate(config, moments) == weeks


def test_an_edited_schedule_does_not_send_the_same_week_again() -> None:
    runs: dict[str, DigestRun] = {}
    assert simulate(berlin_config("0 8 * * mon"), [MONDAY], runs) == ["2026-W49"]
    # Edited on Wednesday to fire Wednesdays at 18:00: same ISO week, same key,
    # so this week's Wednesday fire sends nothing; next week's does.
    after = berlin_config("0 18 * * wed")
    wednesday = datetime(2026, 12, 2, 18, tzinfo=BERLIN)
    assert simulate(after, [wednesday, wednesday + 7 * DAY], runs) == ["2026-W50"]


# --- future posts ------------------------------------------------------------------------


def post(source: str, date: datetime) -> Post:
    return Post(
        source=source,
        title=source,
        date=date,
        slug=source,
        permalink=f"/{source}.html",
        id=source,
        digest=source,
        body_line=4,
    )


def test_publish_plan_is_the_soonest_scheduled_post() -> None:
    now = datetime(2026, 11, 28, 9, tzinfo=UTC)
    posts = [
        post("posts/c.md", now + 2 * DAY),
        post("posts/a.md", now + HOUR),
        post("posts/b.md", now + HOUR),
        post("posts/old.md", now - DAY),
    ]
    split = split_posts(posts, [], now)
    plan = publish_plan(split.scheduled)
    assert plan is not None
    assert plan.when == now + HOUR
    assert plan.sources == ("posts/a.md", "posts/b.md")
    # At that moment the rebuild publishes both, and plans the next one.
    later = split_posts(posts, [], plan.when)
    assert {p.source for p in later.published} == {"posts/a.md", "posts/b.md", "posts/old.md"}
    following = publish_plan(later.scheduled)
    assert following is not None and following.sources == ("posts/c.md",)
    assert publish_plan(split_posts(posts, [], now + 3 * DAY).scheduled) is None


# --- retries of messages a server deferred -----------------------------------------------------


def test_deferred_messages_are_retried_while_still_within_max_lateness() -> None:
    limit = timedelta(hours=24)
    assert retry_time(MONDAY, MONDAY + HOUR, limit, owed=3) == (MONDAY + HOUR).astimezone(
        UTC
    ) + timedelta(minutes=15)
    assert retry_time(MONDAY, MONDAY + 23 * HOUR + timedelta(minutes=50), limit, owed=3) is None
    assert retry_time(MONDAY, MONDAY + HOUR, limit, owed=0) is None

"""Digest periods: which scheduled digest a moment belongs to, and its key.

A digest is identified by its period, not by the moment it happened to run,
so asking twice for the same period finds the same ledger rows and sends
nothing new. The key is the ISO week (``2026-W48``) for a schedule that fires
at most once a week, the local date (``2026-11-28``) for one that fires at most
daily and the month (``2026-11``) for a monthly one; any other schedule falls
back to its local fire time (``2026-11-28T0830``). Editing the schedule within
the same week, day or month therefore keeps the key.

The schedule is a five-field crontab line read in ``site.timezone`` (see
:mod:`publisher.config.crontab`). Use :func:`schedule_trigger` wherever the
schedule is turned into fire times, so the scheduler and the digest agree.

Pure: the time is an argument; no clock, file or store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from publisher.config import Config
from publisher.config.crontab import cron_trigger, crontab_fields, schedule_problem, weekdays
from publisher.errors import ConfigError

__all__ = ["Period", "next_due", "period_at", "period_key", "schedule_trigger"]

_SINGLE = re.compile(r"^\d{1,2}$")
# How far back to look for the latest fire time: short windows first, so a
# schedule that fires every minute costs a few steps, not a year's worth.
_LOOKBACKS = (
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
    timedelta(days=4 * 366 + 1),
    timedelta(days=8 * 366 + 1),
)


@dataclass(frozen=True)
class Period:
    """One scheduled digest: its key and the moment it fell due (aware, site time)."""

    key: str
    due: datetime


def schedule_trigger(config: Config) -> Any:
    """The digest schedule as an APScheduler trigger (a CronTrigger) in the site's time zone.

    Raises :class:`ConfigError` naming ``digest.schedule`` when it cannot be read.
    """
    schedule, zone = config.digest.schedule, config.site.timezone
    problem = schedule_problem(schedule, zone)
    if problem is not None:
        raise ConfigError([problem], str(config.source or "config.yaml"))
    return cron_trigger(" ".join(schedule.split()), zone)


def _kind(schedule: str) -> str:
    """How often the schedule can fire at most: 'month', 'week', 'day' or 'any'."""
    minute, hour, day, _month, weekday = crontab_fields(schedule)
    if not (_SINGLE.match(minute) and _SINGLE.match(hour)):
        return "any"
    days = weekdays(weekday)
    single_day = (days is not None and len(days) == 1) or re.fullmatch(r"[a-zA-Z]{3}", weekday)
    if _SINGLE.match(day) and weekday == "*":
        return "month"
    if day == "*" and single_day:
        return "week"
    return "day"


def period_key(config: Config, due: datetime) -> str:
    """The key of the period whose fire time is ``due``."""
    local = due.astimezone(config.site.timezone)
    kind = _kind(" ".join(config.digest.schedule.split()))
    if kind == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if kind == "day":
        return local.strftime("%Y-%m-%d")
    if kind == "month":
        return local.strftime("%Y-%m")
    return local.strftime("%Y-%m-%dT%H%M")


def period_at(config: Config, now: datetime) -> Period | None:
    """The latest scheduled digest at or before ``now``, or None if none ever fired."""
    trigger = schedule_trigger(config)
    for lookback in _LOOKBACKS:
        fire: datetime | None = trigger.get_next_fire_time(None, now - lookback)
        if fire is None or fire > now:
            continue
        while True:
            following: datetime | None = trigger.get_next_fire_time(fire, fire)
            if following is None or following > now:
                return Period(period_key(config, fire), fire)
            fire = following
    return None


def next_due(config: Config, now: datetime) -> datetime:
    """The first scheduled digest strictly after ``now`` (aware, site time)."""
    trigger = schedule_trigger(config)
    fire: datetime | None = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
    if fire is None:
        raise ConfigError(
            [f"digest.schedule: never fires after {now.isoformat()}"],
            str(config.source or "config.yaml"),
        )
    return fire

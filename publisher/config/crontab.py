"""A crontab line read as APScheduler's trigger: what ``digest.schedule`` means.

Five fields (minute hour day month weekday) read in the site's time zone by
APScheduler's :class:`CronTrigger`. APScheduler 3 numbers weekdays from Monday
= 0, unlike cron's Sunday = 0, so numeric weekdays are translated to names
first: ``0 8 * * 1`` means Monday, as in every crontab.

Here, below every part that fires on the schedule, so that the config can
check the value when it is read (every problem of a file in one run) and the
digest and the scheduler fire on the very same trigger
(:func:`publisher.digest.period.schedule_trigger`). Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from functools import lru_cache
from typing import Any

__all__ = ["cron_trigger", "crontab_fields", "schedule_problem", "weekdays"]

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_ITEM = re.compile(r"^(\*|\d)(?:-(\d))?(?:/(\d+))?$")


def weekdays(field: str) -> set[int] | None:
    """Cron weekdays (Sunday = 0) named by a numeric field, or None if it uses names."""
    days: set[int] = set()
    for item in field.split(","):
        match = _DAY_ITEM.match(item)
        if not match:
            return None
        first, last, step = match.groups()
        if first == "*":
            if last is not None:
                return None
            low, high = 0, 6
        else:
            low = int(first)
            high = int(last) if last is not None else (6 if step else low)
        if low > 7 or high > 7 or low > high:
            raise ValueError(f"bad weekday range {item!r}")
        days.update(d % 7 for d in range(low, high + 1, int(step or 1)))
    return days


def crontab_fields(schedule: str) -> list[str]:
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    return fields


@lru_cache(maxsize=32)
def cron_trigger(schedule: str, zone: tzinfo) -> Any:
    """The trigger of ``schedule`` in ``zone`` (a CronTrigger); ValueError if unreadable."""
    # Imported here: APScheduler costs a tenth of a second that most builds do not need.
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    minute, hour, day, month, weekday = crontab_fields(schedule)
    days = weekdays(weekday)
    if days is not None and weekday != "*":
        weekday = "*" if len(days) == 7 else ",".join(_CRON_DAYS[d] for d in sorted(days))
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=weekday, timezone=zone
    )


def schedule_problem(schedule: str, zone: tzinfo) -> str | None:
    """The config problem of ``digest.schedule`` as one line, or None if it can be read."""
    try:
        cron_trigger(" ".join(schedule.split()), zone)
    except ValueError as exc:
        return f"digest.schedule: {exc}, got {schedule!r} (a crontab line such as '0 8 * * mon')"
    return None

"""Whether a digest period is sent, resumed, skipped or left alone at a given time.

One rule for every way a digest starts: ``publisher run`` when the schedule
fires or after downtime, and ``publisher digest send`` from cron or a
systemd timer (whose ``Persistent=true`` runs a missed timer late). Pure: the
time and the recorded run are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publisher.digest.period import Period
    from publisher.store import DigestRun

__all__ = ["Decision", "catch_up_decision", "lateness"]


@dataclass(frozen=True)
class Decision:
    """What to do about one digest period, and why (the why goes into the log)."""

    action: str  # "send", "resume", "skip" or "nothing"
    reason: str


def lateness(due: datetime, now: datetime) -> timedelta:
    """How long after ``due`` it is at ``now``, in real elapsed time.

    Both are converted to UTC first: subtracting two datetimes that share a
    ZoneInfo compares wall clocks, which is an hour off across a DST change.
    """
    return now.astimezone(UTC) - due.astimezone(UTC)


def _hours(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def catch_up_decision(
    period: Period | None, now: datetime, max_lateness: timedelta, run: DigestRun | None
) -> Decision:
    """Decide about the latest digest period at ``now`` given its recorded run, if any.

    Used both at start (a digest missed while the process was down) and when
    the schedule fires, so there is one rule: a period whose run is done or
    skipped is left alone; an interrupted run is resumed through the send
    ledger however late, because some subscribers already have it and the rest
    should too; a period never started is sent if less than ``max_lateness``
    late and otherwise skipped, with the skip recorded so the next start does
    not reconsider it.
    """
    if period is None:
        return Decision("nothing", "the digest schedule has not fired yet")
    late = lateness(period.due, now)
    due = f"{period.key} (due {period.due.isoformat()})"
    if run is not None:
        if run.status in ("done", "skipped"):
            return Decision("nothing", f"{due} already {run.status}")
        if run.status == "running":
            return Decision("resume", f"{due} was interrupted; resuming through the send ledger")
        if late < max_lateness:
            return Decision("send", f"{due} failed earlier; retrying, {_hours(late)} late")
        return Decision(
            "nothing",
            f"{due} failed and is {_hours(late)} late, beyond digest.max_lateness"
            f" {_hours(max_lateness)}; not retried",
        )
    if late < timedelta(0):
        return Decision("nothing", f"{due} is not due yet")
    if late < max_lateness:
        return Decision("send", f"{due}, {_hours(late)} late")
    return Decision(
        "skip",
        f"{due} was missed: {_hours(late)} late, beyond digest.max_lateness {_hours(max_lateness)}",
    )

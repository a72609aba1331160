"""Digest periods: the latest fire time at or before a moment, and a key that outlives edits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from publisher.config import Config, parse_config
from publisher.digest.period import next_due, period_at
from publisher.errors import ConfigError

TOKYO = ZoneInfo("Asia/Tokyo")
# Saturday 28 November 2026, 21:00 in Tokyo.
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def config(schedule: str, tmp_path: Path = Path("/tmp")) -> Config:
    raw = {
        "site": {"title": "T", "url": "https://example.com", "timezone": "Asia/Tokyo"},
        "digest": {"schedule": schedule},
    }
    return parse_config(raw, tmp_path)


@pytest.mark.parametrize(
    ("schedule", "key", "due"),
    [
        ("0 8 * * mon", "2026-W48", datetime(2026, 11, 23, 8, 0, tzinfo=TOKYO)),
        # Cron numbers Sunday 0, Monday 1: not APScheduler 3's Monday 0.
        ("0 8 * * 1", "2026-W48", datetime(2026, 11, 23, 8, 0, tzinfo=TOKYO)),
        ("0 9 * * 0", "2026-W47", datetime(2026, 11, 22, 9, 0, tzinfo=TOKYO)),
        ("0 9 * * 7", "2026-W47", datetime(2026, 11, 22, 9, 0, tzinfo=TOKYO)),
        ("0 8 * * *", "2026-11-28", datetime(2026, 11, 28, 8, 0, tzinfo=TOKYO)),
        ("0 8 * * 1-5", "2026-11-27", datetime(2026, 11, 27, 8, 0, tzinfo=TOKYO)),
        ("30 7 1 * *", "2026-11", datetime(2026, 11, 1, 7, 30, tzinfo=TOKYO)),
        ("*/15 * * * *", "2026-11-28T2100", datetime(2026, 11, 28, 21, 0, tzinfo=TOKYO)),
        ("0 8 29 2 *", "2024-02", datetime(2024, 2, 29, 8, 0, tzinfo=TOKYO)),
    ],
)
def test_period_at(schedule: str, key: str, due: datetime) -> None:
    period = period_at(config(schedule), NOW)
    assert period is not None
    assert period.key == key
    assert period.due == due
    assert period.due.utcoffset() == timedelta(hours=9)


def test_a_fire_time_belongs_to_its_own_period() -> None:
    due = datetime(2026, 11, 23, 8, 0, tzinfo=TOKYO)
    just_before = period_at(config("0 8 * * mon"), due - timedelta(seconds=1))
    exactly = period_at(config("0 8 * * mon"), due)
    assert just_before is not None and just_before.key == "2026-W47"
    assert exactly is not None and exactly.key == "2026-W48" and exactly.due == due


def test_key_survives_a_schedule_edit_within_the_week() -> None:
    keys = {
        period_at(config(s), NOW).key  # type: ignore[union-attr]
        for s in ("0 8 * * mon", "30 9 * * tue", "0 6 * * wed", "0 20 * * fri")
    }
    assert keys == {"2026-W48"}


def test_key_survives_a_schedule_edit_within_the_day_and_month() -> None:
    assert {period_at(config(s), NOW).key for s in ("0 8 * * *", "15 6 * * *")} == {  # type: ignore[union-attr]
        "2026-11-28"
    }
    assert {period_at(config(s), NOW).key for s in ("0 8 1 * *", "0 7 2 * *")} == {  # type: ignore[union-attr]
        "2026-11"
    }


def test_daylight_saving_time_is_honoured() -> None:
    raw = {
        "site": {"title": "T", "url": "https://example.com", "timezone": "Europe/Berlin"},
        "digest": {"schedule": "0 8 * * mon"},
    }
    berlin = parse_config(raw, Path("/tmp"))
    summer = period_at(berlin, datetime(2026, 7, 1, tzinfo=UTC))
    winter = period_at(berlin, datetime(2026, 12, 1, tzinfo=UTC))
    assert summer is not None and summer.due.astimezone(UTC).hour == 6
    assert winter is not None and winter.due.astimezone(UTC).hour == 7


def test_next_due_is_strictly_after() -> None:
    c = config("0 8 * * mon")
    due = datetime(2026, 11, 30, 8, 0, tzinfo=TOKYO)
    assert next_due(c, NOW) == due
    assert next_due(c, due) == due + timedelta(days=7)


def test_bad_schedule_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"digest\.schedule: .*'every monday'"):
        period_at(config("every monday"), NOW)
    with pytest.raises(ConfigError, match=r"digest\.schedule"):
        period_at(config("0 25 * * *"), NOW)

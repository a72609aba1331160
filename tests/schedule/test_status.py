"""`publisher status`: the last build as every build records it, digests from the store."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from publisher.schedule.status import (
    BuildRecord,
    ScheduledPost,
    describe,
    read_status,
    write_status,
)
from publisher.store import DigestRun
from tests.conftest import Site

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo


def test_status_file_round_trips_and_a_corrupt_one_reads_as_none(site: Site) -> None:
    config = site.config()
    record = BuildRecord(
        at=NOW,
        by="run",
        result="rejected",
        seconds=0.25,
        published=3,
        written=2,
        errors=("posts/b.md:2:8: title: must be a string",),
        scheduled=(ScheduledPost("posts/c.md", "Soon", NOW + timedelta(hours=5)),),
    )
    write_status(config, record)
    assert read_status(config) == record
    (config.paths.state / "status.json").write_text("{not json", "utf-8")
    assert read_status(config) is None


def test_describe_says_what_a_user_needs_to_know() -> None:
    record = BuildRecord(
        at=NOW,
        by="build",
        result="rejected",
        seconds=0.5,
        published=12,
        written=3,
        unchanged=9,
        errors=("posts/b.md:2:8: title: must be a string",),
        stale=("posts/a.md:3:1: date: cannot read 'soon' as a date",),
        scheduled=(
            ScheduledPost("posts/later.md", "Later", NOW + timedelta(days=2)),
            ScheduledPost("posts/due.md", "Due", NOW - timedelta(minutes=5)),
        ),
    )
    run = DigestRun(
        digest="2026-W48",
        due_at=datetime(2026, 11, 23, 8, tzinfo=TOKYO),
        started_at=datetime(2026, 11, 23, 8, tzinfo=TOKYO),
        finished_at=datetime(2026, 11, 23, 8, 3, tzinfo=TOKYO),
        status="done",
        sent=120,
        skipped=4,
        failed=1,
        uncertain=0,
        note="",
    )
    lines = describe(
        now=NOW,
        tz=TOKYO,
        runner_pid=4321,
        build=record,
        next_digest=datetime(2026, 11, 30, 8, tzinfo=TOKYO),
        next_digest_key="2026-W49",
        last_digest=run,
    )
    assert lines == [
        "publisher run: running (pid 4321)",
        "last build: 2026-11-28 10:00:00 JST by publisher build, 1 posts rejected,"
        " 12 published, 3 files written, 9 unchanged (0.50s)",
        "  posts/b.md:2:8: title: must be a string",
        "  posts/a.md:3:1: date: cannot read 'soon' as a date (kept its last good version)",
        "next digest: 2026-11-30 08:00:00 JST (2026-W49)",
        "last digest: 2026-W48 (due 2026-11-23 08:00:00 JST) done at 2026-11-23 08:03:00 JST:"
        " 120 sent, 4 skipped, 1 failed, 0 uncertain",
        "future posts: 2 waiting",
        "  2026-11-28 09:55:00 JST  posts/due.md  'Due' (due; appears at the next build)",
        "  2026-11-30 10:00:00 JST  posts/later.md  'Later'",
    ]


def test_describe_with_nothing_recorded_yet() -> None:
    lines = describe(
        now=NOW,
        tz=TOKYO,
        runner_pid=None,
        build=None,
        next_digest=None,
        last_digest=None,
        digest_problem="",
    )
    assert lines == [
        "publisher run: not running",
        "last build: none recorded",
        "next digest: none scheduled",
        "last digest: none",
        "future posts: none waiting",
    ]


def test_publisher_build_records_its_result_and_status_shows_it(site: Site) -> None:
    site.post("2026-11-01-hello.md", "title: Hello\ndate: 2026-11-01 09:00")
    site.post("2026-12-24-eve.md", "title: Eve\ndate: 2026-12-24 18:00")
    site.post("2026-11-02-bad.md", "title: [oops\ndate: 2026-11-02")
    now = "2026-11-28T10:00:00+09:00"
    built = site.run("--now", now, "build")
    assert built.returncode == 1
    data = json.loads((site.root / ".publisher" / "status.json").read_text("utf-8"))
    assert data["by"] == "build"
    assert data["result"] == "rejected"
    assert re.match(r"posts/2026-11-02-bad\.md:\d+:\d+: front matter: ", data["errors"][0])

    shown = site.run("--now", now, "status")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "publisher run: not running"
    assert lines[1].startswith("last build: 2026-11-28 10:00:00 JST by publisher build, 1 posts")
    assert lines[2] == "  " + data["errors"][0]
    assert "next digest: 2026-11-30 08:00:00 JST (2026-W49)" in lines
    assert "last digest: none" in lines
    assert lines[-2:] == [
        "future posts: 1 waiting",
        "  2026-12-24 18:00:00 JST  posts/2026-12-24-eve.md  'Eve'",
    ]
    # `status` only reads: it created no database.
    assert not (site.root / "publisher.db").exists()


def test_a_build_that_cannot_write_is_recorded_as_failed(site: Site) -> None:
    site.post("2026-11-01-hello.md", "title: Hello\ndate: 2026-11-01 09:00")
    site.output.mkdir()
    (site.output / "atom.xml").mkdir()  # a folder where the feed file should go
    built = site.run("--now", "2026-11-28T10:00:00+09:00", "build")
    assert built.returncode != 0
    record = read_status(site.config())
    assert record is not None
    assert record.result == "failed"
    assert record.by == "build"
    assert "atom.xml" in record.message
    shown = site.run("--now", "2026-11-28T10:00:00+09:00", "status")
    assert "by publisher build, failed: " in shown.stdout

"""What the last build did, kept in a small file for ``publisher status``.

Every build, whether ``publisher run`` or a ``publisher build`` from cron
started it, replaces ``<paths.state>/status.json`` atomically with a
:class:`BuildRecord`: when it ran, how it ended, the rejected posts and the
future posts waiting for their date. Digest runs are not copied here: the
store is their one record. :func:`describe` turns all of it into the lines
``publisher status`` prints, without I/O, so tests drive it with plain values.

What it must never do: leave a half-written status file, or fail on one it cannot
read (that reads as no record).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from publisher.build.output import atomic_write
from publisher.config import Config

if TYPE_CHECKING:
    from publisher.build.pipeline import BuildResult
    from publisher.store import DigestRun

__all__ = [
    "STATUS_FILE",
    "BuildRecord",
    "ScheduledPost",
    "build_record",
    "describe",
    "failed_build_record",
    "read_status",
    "record_build",
    "record_failed_build",
    "write_status",
]

STATUS_FILE = "status.json"
_FORMAT = 1


@dataclass(frozen=True)
class ScheduledPost:
    """A post whose date had not come at the last build."""

    source: str
    title: str
    date: datetime


@dataclass(frozen=True)
class BuildRecord:
    """The outcome of one build, as ``publisher status`` shows it."""

    at: datetime
    by: str  # "run" or "build": which command built
    result: str  # "ok", "rejected" (some posts refused) or "failed" (nothing written)
    seconds: float = 0.0
    published: int = 0
    written: int = 0
    unchanged: int = 0
    errors: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    message: str = ""
    scheduled: tuple[ScheduledPost, ...] = field(default_factory=tuple)


def build_record(result: BuildResult, *, now: datetime, by: str) -> BuildRecord:
    """Summarise a finished build."""
    return BuildRecord(
        at=now,
        by=by,
        result="rejected" if result.errors else "ok",
        seconds=round(result.seconds, 3),
        published=result.published,
        written=len(result.written),
        unchanged=len(result.unchanged),
        errors=tuple(str(e) for e in result.errors),
        stale=tuple(str(e) for e in result.stale),
        scheduled=tuple(ScheduledPost(p.source, p.title, p.date) for p in result.scheduled),
    )


def failed_build_record(
    message: str, *, now: datetime, by: str, seconds: float, previous: BuildRecord | None
) -> BuildRecord:
    """A build that raised; the posts waiting are still those the last good build saw."""
    return BuildRecord(
        at=now,
        by=by,
        result="failed",
        seconds=round(seconds, 3),
        message=message,
        scheduled=previous.scheduled if previous else (),
    )


def write_status(config: Config, record: BuildRecord) -> None:
    """Replace the status file atomically."""
    data = asdict(record)
    data["format"] = _FORMAT
    text = json.dumps(data, ensure_ascii=False, indent=1, default=_iso)
    atomic_write(config.paths.state / STATUS_FILE, text.encode("utf-8") + b"\n")


def read_status(config: Config) -> BuildRecord | None:
    """The last build's record, or None if there is none or it cannot be read."""
    try:
        data = json.loads((config.paths.state / STATUS_FILE).read_text("utf-8"))
        if data.pop("format", None) != _FORMAT:
            return None
        data["at"] = datetime.fromisoformat(data["at"])
        data["errors"] = tuple(data["errors"])
        data["stale"] = tuple(data["stale"])
        data["scheduled"] = tuple(
            ScheduledPost(s["source"], s["title"], datetime.fromisoformat(s["date"]))
            for s in data["scheduled"]
        )
        return BuildRecord(**data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def record_build(config: Config, result: BuildResult, *, now: datetime, by: str) -> str:
    """Record a finished build for ``publisher status``; returns a problem to warn about, or ""."""
    return _save(config, build_record(result, now=now, by=by))


def record_failed_build(
    config: Config, message: str, *, now: datetime, by: str, seconds: float = 0.0
) -> str:
    """Record a build that raised; returns a problem to warn about, or ""."""
    previous = read_status(config)
    return _save(
        config,
        failed_build_record(message, now=now, by=by, seconds=seconds, previous=previous),
    )


def _save(config: Config, record: BuildRecord) -> str:
    try:
        write_status(config, record)
    except OSError as exc:
        # The feeds are what matters; a status file that cannot be written is only a warning.
        return f"status file not written: {exc}"
    return ""


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in the status file")


def _show(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def describe(
    *,
    now: datetime,
    tz: tzinfo,
    runner_pid: int | None,
    build: BuildRecord | None,
    next_digest: datetime | None,
    next_digest_key: str = "",
    last_digest: DigestRun | None,
    digest_problem: str = "",
) -> list[str]:
    """The lines of ``publisher status``: runner, last build, digests, posts waiting."""
    lines: list[str] = []
    if runner_pid is None:
        lines.append("publisher run: not running")
    else:
        pid = f" (pid {runner_pid})" if runner_pid > 0 else ""
        lines.append(f"publisher run: running{pid}")

    if build is None:
        lines.append("last build: none recorded")
    else:
        what = {
            "ok": f"ok, {build.published} posts published, {build.written} files written,"
            f" {build.unchanged} unchanged",
            "rejected": f"{len(build.errors)} posts rejected, {build.published} published,"
            f" {build.written} files written, {build.unchanged} unchanged",
            "failed": f"failed: {build.message}",
        }.get(build.result, build.result)
        lines.append(
            f"last build: {_show(build.at, tz)} by publisher {build.by}, {what}"
            f" ({build.seconds:.2f}s)"
        )
        lines.extend(f"  {error}" for error in build.errors)
        lines.extend(f"  {error} (kept its last good version)" for error in build.stale)

    if digest_problem:
        lines.append(f"next digest: unknown ({digest_problem})")
    elif next_digest is None:
        lines.append("next digest: none scheduled")
    else:
        key = f" ({next_digest_key})" if next_digest_key else ""
        lines.append(f"next digest: {_show(next_digest, tz)}{key}")
    if last_digest is None:
        lines.append("last digest: none")
    else:
        run = last_digest
        when = _show(run.finished_at or run.started_at, tz)
        counts = (
            f"{run.sent} sent, {run.skipped} skipped, {run.failed} failed,"
            f" {run.uncertain} uncertain"
        )
        note = f"; {run.note}" if run.note else ""
        lines.append(
            f"last digest: {run.digest} (due {_show(run.due_at, tz)}) {run.status}"
            f" at {when}: {counts}{note}"
        )

    waiting = build.scheduled if build else ()
    lines.extend(_scheduled_lines(waiting, now, tz))
    return lines


def _scheduled_lines(posts: Sequence[ScheduledPost], now: datetime, tz: tzinfo) -> list[str]:
    if not posts:
        return ["future posts: none waiting"]
    lines = [f"future posts: {len(posts)} waiting"]
    for post in sorted(posts, key=lambda p: (p.date, p.source)):
        # A post whose time has come but which no build has published yet: say so,
        # because under cron it appears only at the next `publisher build`.
        late = " (due; appears at the next build)" if post.date <= now else ""
        lines.append(f"  {_show(post.date, tz)}  {post.source}  {post.title!r}{late}")
    return lines

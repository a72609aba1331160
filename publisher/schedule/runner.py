"""``publisher run``: rebuild on save, publish future posts on time, send digests on schedule.

The decisions are pure functions of plain values, so tests drive them with
datetimes instead of waiting: :func:`catch_up_decision` (send, resume, skip or
leave a digest period alone) and :func:`publish_plan` (when the next future
post falls due). :class:`Runner` is the I/O around them:

* watching (:mod:`publisher.schedule.watch`) hands it settled bursts of saves; it
  rebuilds with ``keep_last_good`` and one :class:`BuildCache` kept in memory,
  so a post an edit broke keeps its last good version in the feeds;
* after every build a date job is planned for the soonest scheduled post;
* a cron job fires on ``digest.schedule`` in the site's time zone, and the
  same decision runs once at start to catch up with a digest missed while the
  process was down. Which period a moment belongs to, and whether that period
  already had its digest, comes from :func:`period_at` and the store's digest
  runs, never from APScheduler's memory: jobs live in a MemoryJobStore and are
  planned afresh at each start.

Builds run one at a time (a lock), digests in an executor of their own, so a
digest that takes an hour to send never holds back a rebuild.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.jobstores.base import JobLookupError  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from publisher.build.cache import BuildCache
from publisher.build.pipeline import BuildResult, build
from publisher.config import Config, load_config
from publisher.errors import ConfigError, LockError, PublisherError
from publisher.schedule.catchup import Decision, catch_up_decision, lateness
from publisher.schedule.lock import DIGEST_LOCK, StateLock, lock_path
from publisher.schedule.runlog import log_job, logger
from publisher.schedule.status import BuildRecord, build_record, failed_build_record, write_status
from publisher.schedule.watch import Batch, Watcher
from publisher.site.posts import Post

if TYPE_CHECKING:
    from publisher.digest.period import Period
    from publisher.mail.base import Backend
    from publisher.store import Store

__all__ = [
    "Decision",
    "PublishPlan",
    "Runner",
    "catch_up_decision",
    "lateness",
    "publish_plan",
    "retry_time",
]

_DIGEST_EXECUTOR = "digest"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- decisions (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class PublishPlan:
    """When the next future post falls due, and which posts fall due then."""

    when: datetime
    sources: tuple[str, ...]


def publish_plan(scheduled: Sequence[Post]) -> PublishPlan | None:
    """The rebuild that publishes the soonest of ``scheduled``, or None if nothing waits."""
    if not scheduled:
        return None
    when = min(post.date for post in scheduled)
    return PublishPlan(when, tuple(post.source for post in scheduled if post.date == when))


RETRY_EVERY = timedelta(minutes=15)  # after a server deferred some messages
BUSY_RETRY = timedelta(minutes=5)  # after finding another process sending a digest


def retry_time(
    due: datetime,
    now: datetime,
    max_lateness: timedelta,
    *,
    owed: int,
    every: timedelta = RETRY_EVERY,
) -> datetime | None:
    """When to try a period's pending messages again (a server said "later"), or None.

    Only while the retry would still be within ``max_lateness`` of the period's
    due time: a digest that arrives two days late is worse than one skipped.
    Messages whose delivery is uncertain are not "owed": only an operator may
    resend them.
    """
    if owed <= 0:
        return None
    at = now.astimezone(UTC) + every
    return at if lateness(due, at) < max_lateness else None


# --- the long-running process -------------------------------------------------------------


class _StopRequested(Exception):
    """Raised from a digest's progress callback to end the send after the current message."""


class Runner:
    """The jobs of ``publisher run`` around one site; :meth:`run_forever` is the process.

    ``clock`` is the time every decision uses; tests pass a fixed one and call
    :meth:`rebuild` and :meth:`digest_job` directly. ``backend_factory`` makes
    the mail backend for each digest run (default: ``digest.backend``).
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = _utcnow,
        digests: bool = True,
        backend_factory: Callable[[Config], Backend] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.digests = digests
        self.backend_factory = backend_factory or _make_backend
        self.stop_event = threading.Event()
        self.log = logger()
        self.publishing: PublishPlan | None = None
        self._cache: BuildCache | None = None
        self._record: BuildRecord | None = None
        self._build_lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(2),
                _DIGEST_EXECUTOR: ThreadPoolExecutor(1),
            },
            # No job may be dropped for being late (a suspended laptop, a slow build):
            # the decisions above say what lateness means, not APScheduler.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.watcher = Watcher(lambda: self.config, self.on_batch, self.stop_event, self.log)

    # --- builds ---------------------------------------------------------------------------

    def rebuild(
        self, job: str, reason: str, *, at_least: datetime | None = None
    ) -> BuildResult | None:
        """Build the feeds now; log one line; never raise. Returns None if the build failed."""
        with self._build_lock:
            config = self.config
            now = self.clock()
            if at_least is not None and now < at_least:
                now = at_least  # a date job never runs early, but the clock must agree
            started = time.perf_counter()
            try:
                result = build(config, now=now, keep_last_good=True, cache=self._cache)
                self._cache = result.cache
            except Exception as exc:
                seconds = time.perf_counter() - started
                known = isinstance(exc, PublisherError | OSError)
                message = str(exc) if known else f"{type(exc).__name__}: {exc}"
                self._record = failed_build_record(
                    message, now=now, by="run", seconds=seconds, previous=self._record
                )
                self._save_status(self._record)
                log_job(job, "failed", seconds, f"{message} ({reason})", level=logging.ERROR)
                if not known:
                    # Not a problem with the site but a bug: keep the trace for the report.
                    self.log.error("build traceback (please report it)", exc_info=True)
                return None
            self._record = build_record(result, now=now, by="run")
            self._save_status(self._record)
            log_job(
                job,
                "rejected" if result.errors else "ok",
                result.seconds,
                f"{result.published} posts published, {len(result.written)} files written,"
                f" {len(result.unchanged)} unchanged, {len(result.errors)} rejected,"
                f" {len(result.stale)} kept at last good version, {len(result.scheduled)} scheduled"
                f" ({reason})",
                published=result.published,
                written=len(result.written),
                rejected=len(result.errors),
                stale=len(result.stale),
                scheduled=len(result.scheduled),
            )
            for error in result.errors:
                self.log.warning("%s", error)
            for error in result.stale:
                self.log.warning("%s (kept its last good version)", error)
            for warning in result.warnings:
                self.log.warning("%s", warning)
            self._plan_publish(publish_plan(result.scheduled))
            return result

    def _save_status(self, record: BuildRecord) -> None:
        try:
            write_status(self.config, record)
        except OSError as exc:
            self.log.warning("status file not written: %s", exc)

    def _plan_publish(self, plan: PublishPlan | None) -> None:
        """Keep exactly one date job, for the soonest scheduled post."""
        self.publishing = plan
        if plan is None:
            with contextlib.suppress(JobLookupError):
                self.scheduler.remove_job("publish")
            return
        self.scheduler.add_job(
            self.publish_due,
            DateTrigger(plan.when),
            args=(plan,),
            id="publish",
            replace_existing=True,
        )

    def publish_due(self, plan: PublishPlan) -> None:
        """The date job: rebuild so that the posts of ``plan`` appear, at their time."""
        if self.stop_event.is_set():
            return
        self.rebuild("publish", "due: " + ", ".join(plan.sources), at_least=plan.when)

    def on_batch(self, batch: Batch) -> None:
        """A settled burst of saves: reload the config if it changed, then rebuild once."""
        if self.stop_event.is_set():
            return
        if "config" in batch.kinds:
            self.reload_config()
        # A moved or newly created posts or templates folder is watched from now on.
        self.watcher.replan()
        names = [_relative(p, self.config.paths.root) for p in batch.paths]
        reason = (
            f"{names[0]} changed"
            if len(names) == 1
            else f"{len(names)} files changed"
            if names
            else "watched folders moved"
        )
        self.rebuild("build", reason)

    # --- config ---------------------------------------------------------------------------

    def reload_config(self) -> bool:
        """Read config.yaml again; keep the old config if the new one is invalid."""
        started = time.perf_counter()
        source = self.config.source
        try:
            new = load_config(source)  # digest.schedule is checked there too
        except ConfigError as exc:
            log_job(
                "config",
                "rejected",
                time.perf_counter() - started,
                "kept the previous config",
                level=logging.ERROR,
            )
            for problem in str(exc).splitlines():
                self.log.error("%s", problem)
            return False
        old, self.config = self.config, new
        notes = []
        if new.paths.state != old.paths.state:
            notes.append("paths.state changed: restart publisher run to move its lock")
        if (new.paths.posts, new.paths.templates) != (old.paths.posts, old.paths.templates):
            notes.append("watching the new folders")
        digest_changed = (new.digest, new.site.timezone, new.store) != (
            old.digest,
            old.site.timezone,
            old.store,
        )
        if self.digests and digest_changed and self.scheduler.running:
            self.plan_digests(catch_up=True)
            notes.append("digest schedule re-planned")
        log_job(
            "config",
            "reloaded",
            time.perf_counter() - started,
            "; ".join(notes) or "new settings in use",
        )
        return True

    # --- digests --------------------------------------------------------------------------

    def plan_digests(self, *, catch_up: bool) -> None:
        """(Re)plan the cron job of ``digest.schedule``, and with ``catch_up`` a check at once.

        The check decides about the latest period from the store, so that a start
        after downtime, or a new schedule, neither misses nor repeats a digest.
        """
        from publisher.digest.period import schedule_trigger

        self.scheduler.add_job(
            self.digest_job,
            schedule_trigger(self.config),
            args=("schedule",),
            id="digest",
            executor=_DIGEST_EXECUTOR,
            replace_existing=True,
        )
        if catch_up:
            # Runs once, at once: the start-up (or new-schedule) check of the latest period.
            self.scheduler.add_job(
                self.digest_job,
                args=("catch-up",),
                id="digest-catch-up",
                executor=_DIGEST_EXECUTOR,
                replace_existing=True,
            )

    def next_digest(self) -> datetime | None:
        job = self.scheduler.get_job("digest")
        return None if job is None else job.next_run_time

    def digest_job(self, trigger: str) -> Decision | None:
        """Decide about the latest digest period and act on it; log one line; never raise."""
        if self.stop_event.is_set():
            return None
        from publisher.digest.period import period_at
        from publisher.store import Store

        config = self.config
        now = self.clock()
        started = time.perf_counter()
        try:
            with (
                StateLock(lock_path(config, DIGEST_LOCK), "a digest is being sent"),
                Store.open(config) as store,
            ):
                period = period_at(config, now)
                run = store.get_run(period.key) if period else None
                decision = catch_up_decision(period, now, config.digest.max_lateness, run)
                self._warn_older_interrupted(store, period)
                if period is None or decision.action == "nothing":
                    log_job(
                        "digest",
                        "nothing",
                        time.perf_counter() - started,
                        f"{decision.reason} ({trigger})",
                    )
                elif decision.action == "skip":
                    self._record_skip(store, period, decision, now)
                    log_job(
                        "digest",
                        "skipped",
                        time.perf_counter() - started,
                        f"{decision.reason} ({trigger})",
                        level=logging.WARNING,
                        period=period.key,
                    )
                else:
                    self._send(config, store, period, decision, trigger, now, started)
                return decision
        except LockError as exc:
            # Another process (a `publisher digest send`) is at it. Look again later:
            # it may finish the period, or it may have been a dry run.
            again = now + BUSY_RETRY
            log_job(
                "digest",
                "busy",
                time.perf_counter() - started,
                f"{exc}; looking again at {again.isoformat(timespec='seconds')} ({trigger})",
                level=logging.WARNING,
            )
            self._plan_retry(again)
        except Exception as exc:
            if isinstance(exc, ConfigError):
                # Most often a site that only wants feeds: say how to turn digests off.
                message = "; ".join(str(exc).splitlines())
                message += " (to only build feeds: publisher run --no-digest)"
            elif isinstance(exc, PublisherError):
                message = str(exc)
            else:
                message = f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - started
            log_job("digest", "failed", elapsed, f"{message} ({trigger})", level=logging.ERROR)
            if not isinstance(exc, PublisherError):
                self.log.error("digest traceback (please report it)", exc_info=True)
        return None

    def _warn_older_interrupted(self, store: Store, period: Period | None) -> None:
        last = store.last_run()
        if (
            last is not None
            and last.status == "running"
            and (period is None or last.digest != period.key)
        ):
            self.log.warning(
                "digest %s was interrupted and a newer period has begun; its unsent messages"
                " stay pending (see `publisher digest status`)",
                last.digest,
            )

    def _record_skip(self, store: Store, period: Period, decision: Decision, now: datetime) -> None:
        store.skip_run(period.key, due_at=period.due, note=decision.reason, now=now)

    def _send(
        self,
        config: Config,
        store: Store,
        period: Period,
        decision: Decision,
        trigger: str,
        now: datetime,
        started: float,
    ) -> None:
        from publisher.digest.send import send_digest

        def progress(_done: int, _total: int) -> None:
            # Called after each message is recorded: stopping here never cuts one in half.
            if self.stop_event.is_set():
                raise _StopRequested

        verb = "resumed" if decision.action == "resume" else "sent"
        try:
            with self.backend_factory(config) as backend:
                report = send_digest(
                    config,
                    store,
                    backend,
                    now=now,
                    period=period,
                    on_progress=progress,
                    clock=self.clock,
                )
        except _StopRequested:
            log_job(
                "digest",
                "stopped",
                time.perf_counter() - started,
                f"{period.key}: stopped on request; unsent messages stay pending and are"
                f" sent at the next start ({trigger})",
                level=logging.WARNING,
                period=period.key,
            )
            return
        counts = (
            f"{report.sent} sent, {report.skipped} skipped, {report.failed} failed,"
            f" {report.uncertain} uncertain"
        )
        result = "stopped" if report.stopped else ("failed" if report.failed else verb)
        why = f"; stopped: {report.stopped}" if report.stopped else ""
        retry = retry_time(
            period.due,
            self.clock(),
            config.digest.max_lateness,
            owed=len(store.ledger(period.key, "pending")),
        )
        then = f"; retrying at {retry.isoformat(timespec='seconds')}" if retry else ""
        log_job(
            "digest",
            result,
            time.perf_counter() - started,
            f"{decision.reason}: {counts}{why}{then} ({trigger})",
            level=logging.INFO if report.ok else logging.WARNING,
            period=period.key,
            sent=report.sent,
            failed=report.failed,
            uncertain=report.uncertain,
        )
        for problem in report.problems:
            self.log.warning("%s", problem)
        if retry is not None:
            self._plan_retry(retry)

    def _plan_retry(self, when: datetime) -> None:
        if self.stop_event.is_set():
            return
        self.scheduler.add_job(
            self.digest_job,
            DateTrigger(when),
            args=("retry",),
            id="digest-retry",
            executor=_DIGEST_EXECUTOR,
            replace_existing=True,
        )

    # --- the process ----------------------------------------------------------------------

    def start(self) -> None:
        """Watch, build once, plan every job and start the scheduler."""
        # Watch first: a save made during the first build then causes a second one.
        watching = self.watcher.start()
        self.rebuild("build", "start")
        if self.digests:
            self.plan_digests(catch_up=True)
        # Wake at least once a minute: APScheduler sleeps on a monotonic clock that
        # stands still while the machine is suspended, so a due job would wait on.
        self.scheduler.add_job(_noop, IntervalTrigger(minutes=1), id="heartbeat")
        self.scheduler.start()
        next_digest = self.next_digest()
        self.log.info(
            "publisher run started: watching %s; next digest %s; next scheduled post %s",
            ", ".join(_watched(self.config)),
            next_digest.astimezone(self.config.site.timezone).isoformat() if next_digest else "-",
            self.publishing.when.isoformat() if self.publishing else "-",
        )
        if not watching:
            self.log.warning("the file watches are slow to start; saves may be noticed late")

    def stop(self) -> None:
        """Stop watching, let running jobs finish (a digest stops after its current message)."""
        self.stop_event.set()
        self.watcher.join(timeout=10)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if not self.stop_event.is_set():
                self.log.info("%s received: stopping", signal.Signals(signum).name)
            self.stop_event.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            self.stop_event.wait()
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.log.info("publisher run stopped")


def _make_backend(config: Config) -> Backend:
    from publisher.mail import make_backend

    return make_backend(config)


def _noop() -> None:
    """The heartbeat job: its only effect is to wake the scheduler."""


def _relative(path: str | Path, root: Path) -> str:
    """``path`` as the user knows it: relative to the site folder when it is inside."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _watched(config: Config) -> list[str]:
    paths = (config.paths.posts, config.paths.templates, config.source)
    return [_relative(p, config.paths.root) for p in paths if p is not None]

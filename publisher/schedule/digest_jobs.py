"""The digest jobs of ``publisher run``: on schedule, once at start to catch up, and retries.

A cron job fires on ``digest.schedule`` in the site's time zone, and the same
job runs once at start (or after a new schedule) to catch up with a digest
missed while the process was down. Each run takes the digest lock, asks
:func:`.catchup.catch_up_decision` about the latest period, and then sends,
resumes, records a skip or does nothing, closing with one log line. A server
that deferred messages, or another process found sending, plans one retry
(:func:`.plans.retry_time`, :data:`.plans.BUSY_RETRY`).

Which period a moment belongs to, and whether that period already had its
digest, comes from :func:`publisher.digest.period.period_at` and the store's
digest runs, never from APScheduler's memory: jobs live in a MemoryJobStore
and are planned afresh at each start. A digest job must never raise, never
decide anything itself, and never stop in the middle of a message: a stop is
honoured between two messages, whose ledger then says what is still owed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]

from publisher.config import Config
from publisher.errors import ConfigError, LockError, PublisherError
from publisher.schedule.catchup import Decision, catch_up_decision
from publisher.schedule.jobs import Jobs
from publisher.schedule.lock import DIGEST_LOCK, StateLock, lock_path
from publisher.schedule.plans import BUSY_RETRY, retry_time
from publisher.schedule.runlog import log_job

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler  # type: ignore[import-untyped]

    from publisher.digest.period import Period
    from publisher.mail.base import Backend
    from publisher.store import Store

__all__ = ["DIGEST_EXECUTOR", "DigestJobs", "default_backend"]

# The scheduler's executor for digests: one thread of its own, so a digest that
# takes an hour to send never holds back a rebuild.
DIGEST_EXECUTOR = "digest"


def default_backend(config: Config) -> Backend:
    """The default mail backend of a digest run: ``digest.backend``."""
    from publisher.mail import make_backend

    return make_backend(config)


class _StopRequested(Exception):
    """Raised from a digest's progress callback to end the send after the current message."""


class DigestJobs(Jobs):
    """The ``digest``, ``digest-catch-up`` and ``digest-retry`` jobs around one site.

    ``config`` is called at each run, so a reloaded config is used from the next
    run on; ``backend_factory`` makes the mail backend for each run; a set
    ``stop_event`` ends a send after its current message.
    """

    def __init__(
        self,
        config: Callable[[], Config],
        *,
        clock: Callable[[], datetime],
        scheduler: BaseScheduler,
        stop_event: threading.Event,
        backend_factory: Callable[[Config], Backend],
        log: logging.Logger,
    ) -> None:
        super().__init__(config, clock=clock, scheduler=scheduler, stop_event=stop_event, log=log)
        self.backend_factory = backend_factory

    def plan(self, *, catch_up: bool) -> None:
        """(Re)plan the cron job of ``digest.schedule``, and with ``catch_up`` a check at once.

        The check decides about the latest period from the store, so that a start
        after downtime, or a new schedule, neither misses nor repeats a digest.
        """
        from publisher.digest.period import schedule_trigger

        self.scheduler.add_job(
            self.run,
            schedule_trigger(self._config()),
            args=("schedule",),
            id="digest",
            executor=DIGEST_EXECUTOR,
            replace_existing=True,
        )
        if catch_up:
            # Runs once, at once: the start-up (or new-schedule) check of the latest period.
            self.scheduler.add_job(
                self.run,
                args=("catch-up",),
                id="digest-catch-up",
                executor=DIGEST_EXECUTOR,
                replace_existing=True,
            )

    def next_time(self) -> datetime | None:
        """When the cron job fires next, or None if it is not planned."""
        job = self.scheduler.get_job("digest")
        return None if job is None else job.next_run_time

    def run(self, trigger: str) -> Decision | None:
        """Decide about the latest digest period and act on it; log one line; never raise."""
        if self.stop_event.is_set():
            return None
        from publisher.digest.period import period_at
        from publisher.store import Store

        config = self._config()
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
            self.run,
            DateTrigger(when),
            args=("retry",),
            id="digest-retry",
            executor=DIGEST_EXECUTOR,
            replace_existing=True,
        )

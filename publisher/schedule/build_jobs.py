"""The build and publish jobs of ``publisher run``: rebuild the feeds, and rebuild on time.

:meth:`BuildJobs.rebuild` builds with ``keep_last_good`` and one
:class:`BuildCache` kept in memory, so a post an edit broke keeps its last
good version in the feeds; it records the outcome in ``status.json`` for
``publisher status`` and closes with one log line. After every build exactly
one date job is kept for the soonest scheduled post (:func:`.plans.publish_plan`
decides which); when it fires, :meth:`BuildJobs.publish_due` rebuilds.

Builds run one at a time (a lock). A job here must never raise (a failed build
is a log line and a failed status record, and the previous record's counts
survive it), never run a date job early, and never decide for itself when a
post is due: that is :mod:`.plans`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from apscheduler.jobstores.base import JobLookupError  # type: ignore[import-untyped]
from apscheduler.triggers.date import DateTrigger  # type: ignore[import-untyped]

from publisher.build.cache import BuildCache
from publisher.build.pipeline import BuildResult, build
from publisher.config import Config
from publisher.errors import PublisherError
from publisher.schedule.jobs import Jobs
from publisher.schedule.plans import PublishPlan, publish_plan
from publisher.schedule.runlog import log_job
from publisher.schedule.status import BuildRecord, build_record, failed_build_record, write_status

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler  # type: ignore[import-untyped]

__all__ = ["BuildJobs"]


class BuildJobs(Jobs):
    """The ``build`` and ``publish`` jobs around one site, and what they keep between runs.

    ``config`` is called at each build, so a reloaded config is used from the
    next build on; ``scheduler`` receives the ``publish`` date job.
    """

    def __init__(
        self,
        config: Callable[[], Config],
        *,
        clock: Callable[[], datetime],
        scheduler: BaseScheduler,
        stop_event: threading.Event,
        log: logging.Logger,
        on_built: Callable[[Sequence[str], datetime], object] | None = None,
    ) -> None:
        super().__init__(config, clock=clock, scheduler=scheduler, stop_event=stop_event, log=log)
        self._on_built = on_built  # gets each good build's changed feeds (WebSub)
        self.publishing: PublishPlan | None = None
        self._cache: BuildCache | None = None
        self._record: BuildRecord | None = None
        self._build_lock = threading.Lock()

    def rebuild(
        self, job: str, reason: str, *, at_least: datetime | None = None
    ) -> BuildResult | None:
        """Build the feeds now; log one line; never raise. Returns None if the build failed."""
        with self._build_lock:
            config = self._config()
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
            if self._on_built is not None and result.changed_feeds:
                self._on_built(result.changed_feeds, now)
            return result

    def _save_status(self, record: BuildRecord) -> None:
        try:
            write_status(self._config(), record)
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

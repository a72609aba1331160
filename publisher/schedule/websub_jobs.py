"""The WebSub jobs of ``publisher run``: queue the pings of a rebuild, send them apart.

:meth:`WebSubJobs.queued` runs inside a rebuild and only writes the queue file
(``<paths.state>/websub.json``); the sending is a job of its own executor, once
at once after a rebuild that changed a feed and every minute for retries, so a
slow or failing hub never holds back a rebuild. The queue decides what is due
(:mod:`publisher.websub.queue`); a job here never raises: a failing hub is a
warning in the run log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime

from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from publisher.schedule.jobs import Jobs
from publisher.schedule.runlog import log_job
from publisher.websub import Report, queue_changed, send_due

__all__ = ["WEBSUB_EXECUTOR", "WebSubJobs"]

WEBSUB_EXECUTOR = "websub"


class WebSubJobs(Jobs):
    """Queueing after each rebuild, and the ``websub`` sending job on its own executor."""

    def queued(self, written: Sequence[str], now: datetime) -> int:
        """Queue the pings of a build's written feeds and send them soon; never raise."""
        config = self._config()
        if not config.feeds.websub_hubs:
            return 0
        try:
            changed = queue_changed(config, written, now)
        except OSError as exc:
            self.log.warning("WebSub pings not queued: %s", exc)
            return 0
        if changed:
            # At once, but on the WebSub executor: the rebuild goes on without waiting.
            self.scheduler.add_job(
                self.send, id="websub-now", executor=WEBSUB_EXECUTOR, replace_existing=True
            )
        return changed

    def plan(self) -> None:
        """Retry due pings every minute (the queue says which are due)."""
        self.scheduler.add_job(
            self.send,
            IntervalTrigger(minutes=1),
            id="websub",
            executor=WEBSUB_EXECUTOR,
            replace_existing=True,
        )

    def send(self) -> Report | None:
        """Send the due pings; log one line when any was tried; never raise."""
        config = self._config()
        if self.stop_event.is_set() or not config.feeds.websub_hubs:
            return None
        started = time.perf_counter()
        try:
            report = send_due(config, self.clock())
        except Exception as exc:  # a job must never raise (an unreadable state folder)
            log_job(
                "websub", "failed", time.perf_counter() - started, str(exc), level=logging.ERROR
            )
            return None
        for problem in report.problems:
            self.log.warning("%s", problem)
        if report.sent or report.failed or report.given_up:
            log_job(
                "websub",
                "failed" if report.failed or report.given_up else "ok",
                time.perf_counter() - started,
                f"{len(report.sent)} pings sent, {len(report.failed)} queued for a retry,"
                f" {len(report.given_up)} given up",
                level=logging.WARNING if report.failed or report.given_up else logging.INFO,
                sent=len(report.sent),
                retrying=len(report.failed),
                given_up=len(report.given_up),
            )
        return report

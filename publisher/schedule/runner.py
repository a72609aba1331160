"""``publisher run``: rebuild on save, publish future posts on time, send digests on schedule.

:class:`Runner` is the process: it owns the config in use, the scheduler, the
stop event and the watcher, and wires them to the jobs:

* watching (:mod:`.watch`) hands it settled bursts of saves; it reloads the
  config if that changed and rebuilds once (:mod:`.build_jobs`, which also keeps
  the date job that publishes the soonest future post);
* after a rebuild that changed a feed, the WebSub pings are queued and sent on an
  executor of their own (:mod:`.websub_jobs`), and retried every minute;
* the digest jobs (:mod:`.digest_jobs`) fire on ``digest.schedule`` and once
  at start, to catch up with a digest missed while the process was down;
* :meth:`Runner.start`, :meth:`Runner.stop` and :meth:`Runner.run_forever`
  are the life cycle, with SIGTERM and SIGINT ending it cleanly.

Builds run one at a time, digests in an executor of their own, so a digest
that takes an hour to send never holds back a rebuild. This module must never
decide anything a test would want to drive with datetimes (those decisions are
pure, in :mod:`.plans` and :mod:`.catchup`), and no job's failure may end the
process: only a signal does.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from publisher.build.pipeline import BuildResult
from publisher.config import Config, load_config
from publisher.errors import ConfigError
from publisher.schedule.build_jobs import BuildJobs
from publisher.schedule.catchup import Decision, catch_up_decision, lateness
from publisher.schedule.digest_jobs import DIGEST_EXECUTOR, DigestJobs, default_backend
from publisher.schedule.plans import PublishPlan, publish_plan, retry_time
from publisher.schedule.runlog import log_job, logger
from publisher.schedule.watch import Batch, Watcher
from publisher.schedule.websub_jobs import WEBSUB_EXECUTOR, WebSubJobs

if TYPE_CHECKING:
    from publisher.mail.base import Backend

# The decisions are re-exported for importers of the layout before the split.
__all__ = [
    "Decision",
    "PublishPlan",
    "Runner",
    "catch_up_decision",
    "lateness",
    "publish_plan",
    "retry_time",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.backend_factory = backend_factory or default_backend
        self.stop_event = threading.Event()
        self.log = logger()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": ThreadPoolExecutor(2),
                DIGEST_EXECUTOR: ThreadPoolExecutor(1),
                WEBSUB_EXECUTOR: ThreadPoolExecutor(1),
            },
            # No job may be dropped for being late (a suspended laptop, a slow build):
            # the decisions in .plans and .catchup say what lateness means, not APScheduler.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self.websub = WebSubJobs(
            lambda: self.config,
            clock=clock,
            scheduler=self.scheduler,
            stop_event=self.stop_event,
            log=self.log,
        )
        self.builds = BuildJobs(
            lambda: self.config,
            clock=clock,
            scheduler=self.scheduler,
            stop_event=self.stop_event,
            log=self.log,
            on_built=self.websub.queued,
        )
        self.digest_jobs = DigestJobs(
            lambda: self.config,
            clock=clock,
            scheduler=self.scheduler,
            stop_event=self.stop_event,
            backend_factory=self.backend_factory,
            log=self.log,
        )
        self.watcher = Watcher(lambda: self.config, self.on_batch, self.stop_event, self.log)

    # --- builds ---------------------------------------------------------------------------

    @property
    def publishing(self) -> PublishPlan | None:
        """The date job planned for the soonest scheduled post, if any."""
        return self.builds.publishing

    def rebuild(
        self, job: str, reason: str, *, at_least: datetime | None = None
    ) -> BuildResult | None:
        """Build the feeds now; log one line; never raise. Returns None if the build failed."""
        return self.builds.rebuild(job, reason, at_least=at_least)

    def publish_due(self, plan: PublishPlan) -> None:
        """The date job: rebuild so that the posts of ``plan`` appear, at their time."""
        self.builds.publish_due(plan)

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
        """(Re)plan the cron job of ``digest.schedule``, and with ``catch_up`` a check at once."""
        self.digest_jobs.plan(catch_up=catch_up)

    def next_digest(self) -> datetime | None:
        return self.digest_jobs.next_time()

    def digest_job(self, trigger: str) -> Decision | None:
        """Decide about the latest digest period and act on it; log one line; never raise."""
        return self.digest_jobs.run(trigger)

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
        self.websub.plan()  # WebSub pings left queued, by this run or an earlier one
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

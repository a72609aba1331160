"""What every job class of ``publisher run`` is given: the config, the clock, the scheduler.

:class:`Jobs` holds them for :class:`~publisher.schedule.build_jobs.BuildJobs`,
:class:`~publisher.schedule.digest_jobs.DigestJobs` and
:class:`~publisher.schedule.websub_jobs.WebSubJobs`. ``config`` is called at
each run, so a reloaded config is used from the next run on; a set
``stop_event`` asks work in progress to end.

No I/O and no jobs of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from publisher.config import Config

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler  # type: ignore[import-untyped]

__all__ = ["Jobs"]


class Jobs:
    """The collaborators a job class of the runner works with."""

    def __init__(
        self,
        config: Callable[[], Config],
        *,
        clock: Callable[[], datetime],
        scheduler: BaseScheduler,
        stop_event: threading.Event,
        log: logging.Logger,
    ) -> None:
        self._config = config
        self.clock = clock
        self.scheduler = scheduler
        self.stop_event = stop_event
        self.log = log

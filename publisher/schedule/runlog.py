"""The log of ``publisher run``: one line per job run, for people or for machines.

Every job (a build, a publish, a digest, the catch-up at start) ends with one
line saying what ran, how long it took and how it ended. Details that belong
to a job, such as each rejected post's ``posts/x.md:LINE:COL: ...`` line,
follow it as lines of their own. By default lines are plain text; with
``--json-logs`` each is one JSON object, so journald or a log shipper can
filter on ``job`` and ``result`` without parsing prose.

It never opens a log file of its own: lines go to a stream, stderr by default.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import IO, Any

__all__ = ["LOGGER_NAME", "JsonFormatter", "TextFormatter", "log_job", "logger", "setup_logging"]

LOGGER_NAME = "publisher.run"
_FIELDS = "publisher_fields"


def logger() -> logging.Logger:
    """The logger every part of ``publisher run`` writes to."""
    return logging.getLogger(LOGGER_NAME)


def log_job(
    job: str,
    result: str,
    seconds: float,
    message: str,
    *,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log the one line that closes a job run: ``job result in 0.04s: message``."""
    logger().log(
        level,
        "%s %s in %.2fs: %s",
        job,
        result,
        seconds,
        message,
        extra={_FIELDS: {"job": job, "result": result, "seconds": round(seconds, 3), **fields}},
    )


def _when(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")


class TextFormatter(logging.Formatter):
    """``2026-11-30T08:00:01+01:00 digest sent in 3.20s: 2026-W49: 120 sent``."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        line = f"{_when(record)} {level}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line with ``time``, ``level``, ``message`` and the job's fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _when(record),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        data.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(json_logs: bool = False, stream: IO[str] | None = None) -> logging.Handler:
    """Send ``publisher run``'s log to ``stream`` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    log = logger()
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    # APScheduler logs "Running job ..." and "executed successfully" for every run;
    # our own job lines say more, so keep only its warnings (a missed job, a crash).
    aps = logging.getLogger("apscheduler")
    aps.handlers[:] = [handler]
    aps.setLevel(logging.WARNING)
    aps.propagate = False
    return handler

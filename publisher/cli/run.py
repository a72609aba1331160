"""``publisher run`` and ``publisher status``: the long-running process and a look at it.

Only argument handling and printing live here; the jobs are in
:mod:`publisher.schedule.runner`, the status lines in :mod:`publisher.schedule.status`.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from publisher.config import Config
from publisher.errors import PublisherError

if TYPE_CHECKING:
    from publisher.cli.main import State
    from publisher.store import DigestRun

__all__ = ["run", "status"]


@click.command()
@click.option("--json-logs", is_flag=True, help="Log one JSON object per line instead of text.")
@click.option(
    "--no-digest", is_flag=True, help="Only watch and publish; never send the email digest."
)
@click.pass_obj
def run(state: State, json_logs: bool, no_digest: bool) -> None:
    """Watch posts/, rebuild on save, publish future posts on time, send digests on schedule.

    Runs until SIGTERM or Ctrl-C. Only one `publisher run` may use a site's state
    folder at a time; a second one exits with status 2.
    """
    from publisher.schedule.lock import RUN_LOCK, StateLock, lock_path
    from publisher.schedule.runlog import logger, setup_logging
    from publisher.schedule.runner import Runner

    if state.now is not None:
        raise click.UsageError("publisher run keeps real time; --now cannot be used with it")
    config = state.config
    with StateLock(lock_path(config, RUN_LOCK), "already running"):
        setup_logging(json_logs=json_logs)
        server = None
        if config.server.in_run:
            # The subscribe/unsubscribe pages in the same process (server.in_run), so a
            # small site needs one service; it keeps the config it started with.
            from publisher.web import serve_in_thread

            server = serve_in_thread(config)
            logger().info("serving %s", server.url)
        try:
            Runner(config, digests=not no_digest).run_forever()
        finally:
            if server is not None:
                server.stop()
    sys.exit(0)


@click.command()
@click.pass_obj
def status(state: State) -> None:
    """Show the next digest, the last build and digest, and the future posts waiting."""
    from publisher.schedule.lock import RUN_LOCK, holder_pid, lock_path
    from publisher.schedule.status import describe, read_status

    config = state.config
    now = state.clock()
    next_digest, key, problem = _next_digest(config, now)
    last_digest, store_problem = _last_digest(config)
    lines = describe(
        now=now,
        tz=config.site.timezone,
        runner_pid=holder_pid(lock_path(config, RUN_LOCK)),
        build=read_status(config),
        next_digest=next_digest,
        next_digest_key=key,
        last_digest=last_digest,
        digest_problem=problem,
    )
    if store_problem:
        lines.append(f"store: {store_problem}")
    click.echo("\n".join(lines))


def _next_digest(config: Config, now: datetime) -> tuple[datetime | None, str, str]:
    from publisher.digest.period import next_due, period_key

    try:
        due = next_due(config, now)
    except PublisherError as exc:
        return None, "", str(exc)
    return due, period_key(config, due), ""


def _last_digest(config: Config) -> tuple[DigestRun | None, str]:
    """The latest digest run, read without creating a store that does not exist yet."""
    from sqlalchemy.engine import make_url

    from publisher.store import Store

    try:
        url = make_url(config.store.url)
        database = url.database or ""
        on_disk = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        if on_disk and not Path(database).exists():
            return None, ""
        with Store(config.store.url) as store:
            return store.last_run(), ""
    except PublisherError as exc:
        return None, str(exc)
    except Exception as exc:  # a bad URL or an unreachable server: status still prints
        return None, f"cannot be read: {exc}"

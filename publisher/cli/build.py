"""``publisher build`` and ``publisher check``: argument handling and printing only.

The pipeline is :func:`publisher.build.pipeline.build`.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any

import click

from publisher.cli.main import EXIT_OK, EXIT_REJECTED

if TYPE_CHECKING:
    from datetime import datetime

    from publisher.cli.main import State
    from publisher.config import Config

__all__ = ["build", "check"]


def _without_cycle_collection() -> None:
    """Turn the cyclic garbage collector off for the rest of a one-shot command.

    A build makes millions of small objects that all live until it ends, and
    the collector would walk them again and again with nothing to free: off,
    a cold build of 10,000 posts takes 5 to 8% less time. The process exits
    soon after, so the few cycles it leaves cost nothing.
    """
    gc.disable()


def _report_build(result: Any, verb: str) -> None:
    for error in result.errors:
        click.echo(str(error), err=True)
    for error in result.stale:
        click.echo(f"{error} (kept its last good version)", err=True)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{verb} {len(result.scopes)} feed sets from {result.published} posts"
        f" ({len(result.errors)} rejected, {len(result.scheduled)} scheduled,"
        f" {result.drafts} drafts) in {result.seconds:.2f}s"
        + (
            f": {len(result.written)} files written, {len(result.unchanged)} unchanged"
            + (f", {len(result.removed)} removed" if result.removed else "")
            if verb == "built"
            else ""
        )
    )


@click.command()
@click.option(
    "--no-cache", is_flag=True, help="Build from scratch, ignoring the build cache, and replace it."
)
@click.pass_obj
def build(state: State, no_cache: bool) -> None:
    """Write every feed under the output folder. Exit 1 if any post was rejected."""
    from publisher.build.pipeline import build as run_build
    from publisher.schedule.status import record_build, record_failed_build

    config, now = state.config, state.clock()
    try:
        _without_cycle_collection()
        result = run_build(config, now=now, use_cache=not no_cache, parallel=True)
    except Exception as exc:
        # `publisher status` shows the last build, whoever ran it (cron, systemd, a person).
        record_failed_build(config, str(exc) or type(exc).__name__, now=now, by="build")
        raise
    problem = record_build(config, result, now=now, by="build")
    _report_build(result, "built")
    if problem:
        click.echo(f"warning: {problem}", err=True)
    if config.feeds.websub_hubs:
        _ping_hubs(config, result.changed_feeds, now)
    sys.exit(EXIT_REJECTED if result.errors else EXIT_OK)


def _ping_hubs(config: Config, written: list[str], now: datetime) -> None:
    """Queue a WebSub ping for each changed feed and send the due ones; never fatal."""
    from publisher.websub import queue_changed, send_due

    try:
        queue_changed(config, written, now)
        report = send_due(config, now)
    except OSError as exc:  # the state folder: the build itself is done and fine
        click.echo(f"warning: WebSub pings not queued: {exc}", err=True)
        return
    for problem in report.problems:
        click.echo(f"warning: {problem}", err=True)
    if report.sent:
        click.echo(f"WebSub: {len(report.sent)} pings sent")


@click.command()
@click.pass_obj
def check(state: State) -> None:
    """Read and validate the config and every post; write nothing."""
    from publisher.build.pipeline import build as run_build

    _without_cycle_collection()
    result = run_build(state.config, now=state.clock(), use_cache=False, write=False)
    _report_build(result, "checked")
    sys.exit(EXIT_REJECTED if result.errors else EXIT_OK)

"""The ``publisher`` command line: parses arguments, calls the pipeline, prints.

Exit codes, so that cron and systemd can tell what happened:

* 0: everything worked;
* 1: the job ran, but some input was rejected or some message failed;
* 2: the command could not run at all (bad config, bad arguments, locked state);
* 3: publisher itself failed (a bug: please report it);
* 130: interrupted (Ctrl-C).

Errors are one line each, never a traceback.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import click

from publisher import __version__
from publisher.config import Config, load_config
from publisher.errors import ConfigError, PublisherError

__all__ = ["main"]

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
EXIT_INTERNAL = 3


class State:
    """What every subcommand shares: where the config is and what time it is."""

    def __init__(
        self, config_path: Path | None, now: datetime | None, *, verbose: bool = False
    ) -> None:
        self.config_path = config_path
        self.now = now
        self.verbose = verbose
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The config of ``--config``, ``PUBLISHER_CONFIG``, or the nearest ``config.yaml``."""
        if self._config is None:
            self._config = load_config(self.config_path)
            if self.verbose:
                click.echo(f"publisher: using {self._config.source}", err=True)
        return self._config

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)


def fail(message: str, code: int = EXIT_UNUSABLE) -> NoReturn:
    """Print one error line and exit."""
    click.echo(f"publisher: {message}", err=True)
    sys.exit(code)


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


#: The group's own options, taken wherever they are typed: ``publisher build --config x``
#: is ``publisher --config x build``. True: the option takes a value.
GLOBAL_OPTIONS = {"--config": True, "--now": True, "--verbose": False}


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """``args`` with the group's own options moved in front of the command.

    People type ``--config`` after the command as often as before it; click
    only takes a group's options before. Everything after ``--`` stays as it is.
    """
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        name, equals, _ = arg.partition("=")
        if name in GLOBAL_OPTIONS:
            takes = GLOBAL_OPTIONS[name] and not equals and index + 1 < len(args)
            front.extend(args[index : index + 2] if takes else [arg])
            index += 2 if takes else 1
            continue
        rest.append(arg)
        index += 1
    return front + rest


class SuggestingGroup(click.Group):
    """A command group that answers a mistyped command with the nearest names."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=3, cutoff=0.6)
            if close:
                choices = " or ".join(repr(c) for c in close)
                ctx.fail(f"No such command {name!r}. Did you mean {choices}?")
        return super().resolve_command(ctx, args)


class LazyGroup(SuggestingGroup):
    """A command group whose subcommands in LAZY_COMMANDS are imported on first use."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


def _versions(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: publisher's, and the libraries' that shape its output."""
    if not value or ctx.resilient_parsing:
        return
    from importlib.metadata import PackageNotFoundError, version

    lines = [f"publisher {__version__}"]
    for package in ("feedgen", "Markdown", "Jinja2"):
        try:
            lines.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"{package} (not installed)")
    click.echo("\n".join(lines))
    ctx.exit(0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_versions,
    help="Show the version, and those of feedgen, Markdown and Jinja2.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="PUBLISHER_CONFIG",
    help=(
        "The site's config file, before or after the command (default: $PUBLISHER_CONFIG,"
        " else config.yaml in this folder or the nearest parent)."
    ),
)
@click.option("--verbose", is_flag=True, help="Say which config file is used.")
@click.option(
    "--now",
    callback=_parse_now,
    hidden=True,
    help="Pretend it is this time (ISO 8601); for tests and dry runs.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, now: datetime | None, verbose: bool) -> None:
    """Build RSS, Atom and JSON feeds and send email digests from Markdown posts."""
    ctx.obj = State(config_path, now, verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; every PublisherError becomes one line and an exit code."""
    try:
        # Without standalone mode, click returns what a command returned or passed
        # to ctx.exit(): an exit code, which must not be lost.
        code = cli.main(args=argv, prog_name="publisher", standalone_mode=False)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(line, err=True)
        sys.exit(EXIT_UNUSABLE)
    except PublisherError as exc:
        fail(str(exc))
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("PUBLISHER_DEBUG"):
            raise
        fail(f"internal error: {exc!r} (set PUBLISHER_DEBUG=1 to see where)", EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


# Commands that live in their own modules, loaded only when invoked (or listed
# by --help), so that `publisher build` does not pay for SQLAlchemy, APScheduler
# or the web stack at start-up. Add one line per command: name -> "module:attribute".
LAZY_COMMANDS = {
    "build": "publisher.cli.build:build",
    "check": "publisher.cli.build:check",
    "run": "publisher.cli.run:run",
    "status": "publisher.cli.run:status",
    "digest": "publisher.cli.digest:digest",
    "subscribers": "publisher.cli.subscribers:subscribers",
    "serve": "publisher.cli.serve:serve",
    "bounces": "publisher.cli.bounces:bounces",
    "init": "publisher.cli.init:init",
    "new": "publisher.cli.new:new",
}

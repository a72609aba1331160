"""The command line's own contract: exit codes reach the shell as the commands set them."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest

from publisher.cli.main import cli, main


@pytest.fixture
def probe() -> Iterator[None]:
    """A command that leaves through ``ctx.exit(4)``, as a command may."""

    @cli.command(name="exit-probe")
    @click.pass_context
    def exit_probe(ctx: click.Context) -> None:
        ctx.exit(4)

    try:
        yield
    finally:
        cli.commands.pop("exit-probe")


@pytest.mark.usefixtures("probe")
def test_an_exit_code_set_by_a_command_is_not_lost() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["exit-probe"])
    assert exited.value.code == 4


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "Usage: publisher" in capsys.readouterr().out

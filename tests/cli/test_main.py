"""The command line's own contract: exit codes reach the shell as the commands set them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from publisher import __version__
from publisher.cli.main import cli, hoist_global_options, main
from tests.conftest import Site, run_publisher


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


# --- where options go, and which config is used (the real command, as a user types it) ---


def _site_elsewhere(seed_site: Site) -> Path:
    """The seed site's config, renamed so that nothing finds it by itself."""
    moved = seed_site.root / "site.yaml"
    seed_site.config_path.rename(moved)
    return moved


def test_config_is_taken_before_or_after_the_command(seed_site: Site, tmp_path: Path) -> None:
    config = _site_elsewhere(seed_site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    after = run_publisher("build", "--config", str(config), cwd=elsewhere)
    assert after.returncode == 0, after.stderr
    assert (seed_site.output / "atom.xml").is_file()
    before = run_publisher("--config", str(config), "check", cwd=elsewhere)
    assert before.returncode == 0, before.stderr
    joined = run_publisher("check", f"--config={config}", cwd=elsewhere)
    assert joined.returncode == 0, joined.stderr


def test_publisher_config_names_the_file_when_no_option_does(
    seed_site: Site, tmp_path: Path
) -> None:
    config = _site_elsewhere(seed_site)
    result = run_publisher(
        "--verbose", "build", cwd=tmp_path, env={"PUBLISHER_CONFIG": str(config)}
    )
    assert result.returncode == 0, result.stderr
    assert f"publisher: using {config}" in result.stderr.splitlines()


def test_the_nearest_config_in_a_parent_folder_is_used_and_named(seed_site: Site) -> None:
    result = run_publisher("build", "--verbose", cwd=seed_site.posts)
    assert result.returncode == 0, result.stderr
    assert f"publisher: using {seed_site.config_path}" in result.stderr.splitlines()
    assert (seed_site.output / "atom.xml").is_file()  # paths are the config's, not the cwd's
    assert not (seed_site.posts / "public").exists()


def test_without_any_config_the_error_says_where_it_looked(tmp_path: Path) -> None:
    result = run_publisher("build", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "config.yaml: not found in the current folder or its parents; run from the site"
        " folder, pass --config PATH or set PUBLISHER_CONFIG"
    ]


def test_version_names_the_libraries_that_shape_the_output(tmp_path: Path) -> None:
    result = run_publisher("--version", cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"publisher {__version__}"
    assert [line.split()[0] for line in lines[1:]] == ["feedgen", "Markdown", "Jinja2"]
    assert all(line.split()[1][0].isdigit() for line in lines[1:])


def test_mistyped_commands_and_options_get_a_suggestion(seed_site: Site) -> None:
    command = run_publisher("biuld", cwd=seed_site.root)
    assert command.returncode == 2
    assert "No such command 'biuld'. Did you mean 'build'?" in command.stderr
    sub = run_publisher("digest", "sned", cwd=seed_site.root)
    assert sub.returncode == 2
    assert "No such command 'sned'. Did you mean 'send'?" in sub.stderr
    option = run_publisher("build", "--no-cach", cwd=seed_site.root)
    assert option.returncode == 2
    assert "No such option '--no-cach'. Did you mean '--no-cache'?" in option.stderr


def test_only_the_groups_own_options_move_and_nothing_after_a_double_dash() -> None:
    assert hoist_global_options(["new", "A title", "--config", "c.yaml", "--tag", "x"]) == [
        "--config",
        "c.yaml",
        "new",
        "A title",
        "--tag",
        "x",
    ]
    assert hoist_global_options(["new", "--", "--config"]) == ["new", "--", "--config"]
    assert hoist_global_options(["build", "--verbose", "--now=2026-01-01"]) == [
        "--verbose",
        "--now=2026-01-01",
        "build",
    ]


def test_shell_completion_offers_commands_and_options_as_the_readme_says(
    seed_site: Site,
) -> None:
    """The README's ``eval "$(_PUBLISHER_COMPLETE=bash_source publisher)"`` works."""
    script = run_publisher(cwd=seed_site.root, env={"_PUBLISHER_COMPLETE": "bash_source"})
    assert script.returncode == 0
    assert "complete -o nosort -F _publisher_completion publisher" in script.stdout

    def complete(words: str) -> list[str]:
        env = {
            "_PUBLISHER_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        return run_publisher(cwd=seed_site.root, env=env).stdout.split()

    assert complete("publisher bu") == ["plain,build"]
    assert complete("publisher build --no") == ["plain,--no-cache"]
    assert "plain,send" in complete("publisher digest s")

"""``publisher init [DIR]``: a new site that builds as it is.

The files are :func:`publisher.site.starter.site_files`'; this module asks for
what is missing, refuses to overwrite, and writes. The config it would write is
read back through the config loader first, so a value the site could not build
with (a relative URL, an unknown time zone) is refused before anything is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import click
import yaml

from publisher.cli.main import EXIT_UNUSABLE, State
from publisher.errors import ConfigError, UsageError

__all__ = ["init"]


def _ask(value: str | None, option: str, prompt: str, default: str | None = None) -> str:
    """``value``, or the answer to ``prompt`` on a terminal; no terminal: one line, exit 2."""
    if value is not None:
        return value
    if sys.stdin.isatty() and sys.stdout.isatty():
        return str(click.prompt(prompt, default=default))
    raise UsageError(f"init: {option} is needed (there is no terminal to ask on)")


_BUILTIN = Path(__file__).parent.parent / "templates"


@click.command()
@click.argument("folder", required=False, default=".", type=click.Path(path_type=Path))
@click.option("--title", help="The site's title (asked for on a terminal when not given).")
@click.option("--url", help="Where the built site will be served, e.g. https://example.com/.")
@click.option("--email", help="Your address: the feeds' author and the digests' sender.")
@click.option("--timezone", "zone", help="IANA time zone of post dates, e.g. Asia/Tokyo [UTC].")
@click.option("--language", help="Language of the feeds and emails, e.g. ja [en].")
@click.pass_obj
def init(
    state: State,
    folder: Path,
    title: str | None,
    url: str | None,
    email: str | None,
    zone: str | None,
    language: str | None,
) -> None:
    """Create a new site in FOLDER (default: here): config.yaml, posts/, templates/.

    Nothing that exists is overwritten: if any of the files is there, nothing is written.
    """
    from publisher.build.output import atomic_write
    from publisher.config.load import parse_config
    from publisher.config.yamlsafe import SafeLoader
    from publisher.site.starter import site_files

    title = _ask(title, "--title", "Site title")
    url = _ask(url, "--url", "Site URL", "https://example.com/")
    if email is None and sys.stdin.isatty() and sys.stdout.isatty():
        email = str(
            click.prompt("Your email address (sends the digests; empty: later)", default="")
        )
    tz_name = zone or "UTC"
    try:
        tz = ZoneInfo(tz_name)
    except (ValueError, KeyError):
        raise UsageError(
            f"init: --timezone: {tz_name!r} is not an IANA time zone name such as Asia/Tokyo"
        ) from None
    try:
        files = site_files(
            title=title,
            url=url,
            email=email or "",
            timezone=zone or "",
            language=language or "",
            now=state.clock().astimezone(tz),
            builtin=_BUILTIN,
            builtin_templates=sorted(p.name for p in _BUILTIN.glob("*.j2")),
        )
    except ValueError as exc:
        raise UsageError(f"init: --title: {exc}") from exc
    try:
        parse_config(yaml.load(files["config.yaml"], Loader=SafeLoader), folder.absolute())
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"publisher: init: {problem}", err=True)
        sys.exit(EXIT_UNUSABLE)

    targets = [(folder / name, text) for name, text in files.items()]
    existing = [path for path, _ in targets if path.exists() or path.is_symlink()]
    if existing:
        click.echo(
            f"publisher: init: {', '.join(map(str, existing))} already"
            f" {'exists' if len(existing) == 1 else 'exist'}; nothing written. It would write:",
            err=True,
        )
        for path, _ in targets:
            click.echo(f"  {path}{'  (exists)' if path in existing else ''}", err=True)
        sys.exit(EXIT_UNUSABLE)
    try:
        for path, text in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(
            f"init: cannot write {exc.filename or folder}: {exc.strerror or exc}"
        ) from exc
    for path, _ in targets:
        click.echo(f"created {path}")
    where = "" if folder == Path(".") else f"cd {folder} && "
    click.echo(f"next: {where}publisher serve --watch   (or publisher build)")

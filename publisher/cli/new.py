"""``publisher new "TITLE"``: a new post file in the seed's form, never over another.

The name and text are :mod:`publisher.site.newpost`'s; this module reads the
options, dates the post in the site's zone and writes the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from publisher.cli.main import State
from publisher.errors import UsageError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["new"]


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is under it, as a user would type it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@click.command()
@click.argument("title")
@click.option("--category", "categories", multiple=True, help="A category (repeatable).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option(
    "--date",
    "when",
    metavar="WHEN",
    help="The post's date, e.g. 2026-12-24 or '2026-12-24 09:00' (site time zone) [now].",
)
@click.option("--slug", help="The file name's slug [made from the title].")
@click.option("--author", default="", help="The author [site.author].")
@click.option("--draft", is_flag=True, help="Mark it a draft: in no feed or digest yet.")
@click.pass_obj
def new(
    state: State,
    title: str,
    categories: tuple[str, ...],
    tags: tuple[str, ...],
    when: str | None,
    slug: str | None,
    author: str,
    draft: bool,
) -> None:
    """Write posts/YYYY-MM-DD-slug.md for a post called TITLE and print its path."""
    from publisher.site.dates import parse_date
    from publisher.site.newpost import check_slug, check_title, file_name, post_text

    config = state.config
    tz = config.site.timezone
    date: datetime
    try:
        date = parse_date(when, tz) if when is not None else state.clock()
    except ValueError as exc:
        raise UsageError(f"new: --date: {exc}") from exc
    date = date.astimezone(tz)
    try:
        title = check_title(title)
    except ValueError as exc:
        raise UsageError(f"new: TITLE: {exc}") from exc
    try:
        name = file_name(date, check_slug(slug, title))
    except ValueError as exc:
        raise UsageError(f"new: {'--slug' if slug is not None else 'TITLE'}: {exc}") from exc
    try:
        text = post_text(title, date, categories=categories, tags=tags, author=author, draft=draft)
    except ValueError as exc:
        raise UsageError(f"new: --category/--tag/--author: {exc}") from exc

    path = config.paths.posts / name
    try:
        config.paths.posts.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never over a post that is there, even one written a moment ago.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(
            f"new: {_shown(path)} already exists; nothing written (pass --slug for another name)"
        ) from None
    except OSError as exc:
        raise UsageError(f"new: cannot write {_shown(path)}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    click.echo(_shown(path))

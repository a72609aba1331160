"""The Jinja2 environment shared by pages and emails.

A site's own ``templates/`` folder (``paths.templates``) comes first, so a
writer overrides any built-in template by saving a file of the same name;
the built-in defaults ship inside the package.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

__all__ = ["environment"]

_BUILTIN = Path(__file__).parent / "templates"


def environment(user_folder: Path | None = None) -> jinja2.Environment:
    """A strict, autoescaping environment that looks in ``user_folder`` first."""
    folders = [str(user_folder)] if user_folder and user_folder.is_dir() else []
    folders.append(str(_BUILTIN))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "xml", "html.j2", "xml.j2"), default_for_string=True
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )

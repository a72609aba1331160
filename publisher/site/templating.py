"""The Jinja2 environment shared by pages and emails.

A site's own ``templates/`` folder (``paths.templates``) comes first, so a
writer overrides any built-in template by saving a file of the same name;
the built-in defaults ship inside the package.

Only reads template files: nothing here writes one or renders a template.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from publisher.errors import ConfigError

__all__ = ["environment", "template_error"]

_BUILTIN = Path(__file__).parent.parent / "templates"


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


def template_error(exc: jinja2.TemplateError, name: str) -> ConfigError:
    """One line naming the template file and line, from a Jinja2 error."""
    where = getattr(exc, "filename", None)
    line = getattr(exc, "lineno", None)
    if where is None:
        # Errors raised while rendering carry no position, but Jinja2 rewrites the
        # traceback so that its frames point into the template files.
        tb = exc.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.endswith(".j2"):
                where, line = filename, tb.tb_lineno
            tb = tb.tb_next
    message = getattr(exc, "message", None) or str(exc)
    return ConfigError([f"{f'line {line}: ' if line else ''}{message}"], str(where or name))

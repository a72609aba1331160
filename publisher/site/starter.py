"""The files of a new site, as ``publisher init`` writes them.

A site that builds as it is: the commented ``config.yaml`` of
:mod:`publisher.config.template`, one sample post in the seed's form, a
``templates/`` folder holding only a README on overriding the built-in
templates, and a ``.gitignore`` of what publisher writes.

Pure: no I/O (the built-in templates' names are passed in).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import PurePath

from publisher.config.template import config_text, gitignore_text
from publisher.site.newpost import check_slug, file_name, post_text

__all__ = ["SAMPLE_SLUG", "site_files"]

SAMPLE_SLUG = "welcome"

_SAMPLE_BODY = """\
This is your first post. Every post is a Markdown file in `posts/`, named
`YYYY-MM-DD-slug.md`, with YAML front matter between the two `---` lines above:
`title` and `date` are needed; `categories`, `tags`, `author`, `excerpt` and
`image` are optional.

## Writing the next one

    publisher new "My second post" --category Notes --tag example

writes a file like this one. `publisher serve --watch` shows the site and the next
email digest in your browser, and reloads them whenever you save.

A post dated in the future waits for its date; `draft: true` keeps it out of every
feed and digest until you remove the line.
"""


def _templates_readme(folder: PurePath, builtin: Iterable[str]) -> str:
    names = "\n".join(f"- `{name}`" for name in sorted(builtin))
    return f"""\
# Templates

publisher renders the email digest, its confirmation emails and its web pages with
Jinja2 templates built into the package. To change one, put a file of the **same
name** in this folder: it is used instead of the built-in one, and every template
you do not put here keeps its built-in version. Start from a copy of the built-in
file.

The built-in templates, in `{folder}` where this site was made:

{names}

`publisher serve --watch` re-renders the next digest at `/_preview/digest` each time
you save a template here; a mistake shows as one line on that page. The project's
README ("Templates") lists what each template sees.
"""


def site_files(
    *,
    title: str,
    url: str,
    email: str = "",
    timezone: str = "",
    language: str = "",
    now: datetime,
    builtin: PurePath,
    builtin_templates: Iterable[str] = (),
) -> dict[str, str]:
    """Each file of a new site, by its path relative to the site's folder, and its text.

    ``now`` (in the site's zone) dates the sample post, so that it is published at once;
    ``builtin`` is the built-in templates' folder and ``builtin_templates`` their names.
    """
    given = {"site.title": title, "site.url": url}
    if email:
        given["site.email"] = email
    if timezone:
        given["site.timezone"] = timezone
    if language:
        given["site.language"] = language
    sample = post_text(
        "Welcome",
        now,
        categories=["Notes"],
        tags=["welcome"],
        excerpt=f"The first post of {title}.",
        body=_SAMPLE_BODY,
    )
    return {
        "config.yaml": config_text(given),
        f"posts/{file_name(now, check_slug(None, SAMPLE_SLUG))}": sample,
        "templates/README.md": _templates_readme(builtin, builtin_templates),
        ".gitignore": gitignore_text(),
    }

"""The app's HTML pages: Jinja2 templates (autoescaped) with the headers every page needs.

Every page is a template a site may override (``templates/web_*.html.j2`` in
the site folder), in the site's language, with one small stylesheet and no
script at all. Links and form actions are relative, so the app works the same
behind a proxy that serves it under a sub-path of the site.

Nothing here reads a request or touches the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import jinja2
from starlette.responses import HTMLResponse, Response

from publisher.config import Config
from publisher.web.labels import labels_for

__all__ = ["PAGE_CSP", "PREVIEW_CSP", "STYLESHEET", "Pages", "security_headers"]

STYLESHEET = "web_style.css.j2"
# No inline script or style anywhere; forms may only post back to this app.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " base-uri 'none'; frame-ancestors 'none'"
)
# The built site is the writer's own HTML: its inline styles (and the digests'
# inlined CSS) must work, but scripts only from the site itself.
PREVIEW_CSP = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self' 'unsafe-inline';"
    " script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)


def security_headers() -> dict[str, str]:
    """Headers for every response of the app; pages add their CSP and no-store."""
    return {
        "X-Content-Type-Options": "nosniff",
        # Link tokens are in page URLs: never tell another site where a click came from.
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


class Pages:
    """Renders ``web_<name>.html.j2`` pages in the site's language."""

    def __init__(self, config: Config, env: jinja2.Environment) -> None:
        self.config = config
        self.env = env
        self.labels = labels_for(config.site.language)
        self.stylesheet = env.get_template(STYLESHEET).render(site=config.site).encode("utf-8")
        # A new name whenever the CSS changes, so browsers may cache it for long.
        self.stylesheet_version = hashlib.sha256(self.stylesheet).hexdigest()[:12]

    def text(self, key: str, **values: str) -> str:
        """A label with its ``{placeholders}`` filled in."""
        return self.labels[key].format(site=self.config.site.title, **values)

    def render(
        self,
        name: str,
        *,
        root: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **values: Any,
    ) -> Response:
        """Page ``web_<name>.html.j2``; ``root`` is the relative path back to the app's root."""
        html = self.env.get_template(f"web_{name}.html.j2").render(
            site=self.config.site,
            labels=self.labels,
            text=self.text,
            root=root,
            stylesheet=f"{root}_publisher/web.css?v={self.stylesheet_version}",
            **values,
        )
        return HTMLResponse(
            html,
            status_code=status,
            headers={
                "Content-Security-Policy": PAGE_CSP,
                # Pages carry form tokens and are about one subscriber: never cache them.
                "Cache-Control": "no-store",
                **(headers or {}),
            },
        )

    def message(
        self,
        title_key: str,
        body_key: str,
        *,
        root: str,
        status: int,
        headers: Mapping[str, str] | None = None,
        links: tuple[tuple[str, str], ...] = (),
        **values: str,
    ) -> Response:
        """A page that only says something: a title, a paragraph and some links."""
        return self.render(
            "message",
            root=root,
            status=status,
            headers=headers,
            title=self.text(title_key, **values),
            body=self.text(body_key, **values),
            links=links,
        )

"""``/_preview/digest``: the next digest exactly as one reader would get it (``serve --watch``).

``GET /_preview/digest?subscriber=EMAIL`` renders the current period's digest
for that subscriber (without one: for a reader following everything) on every
request, from the templates and posts as they are now, so a save shows at the
next reload (the live script reloads it): the HTML part as sent, with a bar
on top naming the headers and linking ``/_preview/digest.txt``, the plain-text
part. Nothing is recorded, sent or written, and the links carry the preview's
fake token (:mod:`publisher.digest.preview`). A template that cannot render,
or an address that is not a subscriber, is one line on the page instead.
"""

from __future__ import annotations

import html
from email import message_from_bytes, policy
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from publisher.config import Config
from publisher.digest.message import MessageBuilder
from publisher.digest.preview import Preview, preview_digest
from publisher.digest.render import recipient_for
from publisher.errors import PublisherError
from publisher.mail.headers import make_message_id
from publisher.web.context import WebContext
from publisher.web.live import LiveReload, inject
from publisher.web.pages import PREVIEW_CSP

__all__ = ["DigestPreview"]

#: The headers the bar shows, in this order.
SHOWN_HEADERS = ("From", "To", "Reply-To", "Subject", "List-Unsubscribe", "List-ID", "Message-ID")
_BAR_STYLE = (
    "margin:0;padding:.5em 1em;background:#f3f3f3;color:#222;border-bottom:1px solid #ccc;"
    "font:13px/1.5 system-ui,sans-serif"
)


class DigestPreview:
    """The digest preview's two handlers."""

    def __init__(self, web: WebContext, live: LiveReload) -> None:
        self.web = web
        self.live = live

    @property
    def config(self) -> Config:
        """The config as the writer last saved it (the live preview reloads it)."""
        return self.live.config or self.web.config

    def _preview(self, email: str | None) -> Preview:
        store = self.web.store if email else None
        return preview_digest(self.config, now=self.web.clock(), store=store, email=email)

    def _headers(self, shown: Preview) -> list[tuple[str, str]]:
        """The message's headers, as the reader's mail program would show them."""
        assert shown.rendered is not None
        config = self.config
        recipient = recipient_for(config, 0, shown.email, "", None)
        message = MessageBuilder(config).prepare(
            recipient=recipient,
            content=shown.rendered,
            message_id=make_message_id(config, shown.period.key, 0),
            now=self.web.clock(),
        )
        parsed = message_from_bytes(message.data(), policy=policy.default)
        return [(name, str(parsed[name])) for name in SHOWN_HEADERS if parsed[name] is not None]

    async def page(self, request: Request) -> Response:
        """``GET /_preview/digest``: the HTML part with the headers above it."""
        email = request.query_params.get("subscriber") or None
        try:
            shown = await run_in_threadpool(self._preview, email)
            headers = await run_in_threadpool(self._headers, shown) if shown.rendered else []
        except PublisherError as exc:
            return self._answer(_message_page("digest preview", str(exc)), status=500)
        if shown.rendered is None:
            text = f"{shown.email}: nothing new for digest {shown.period.key}"
            return self._answer(_message_page("digest preview", text))
        text_url = "/_preview/digest.txt" + (f"?subscriber={quote(email)}" if email else "")
        rows = "".join(
            f"<div><b>{html.escape(name)}:</b> {html.escape(value)}</div>"
            for name, value in headers
        )
        bar = (
            f'<div id="publisher-digest-preview" style="{_BAR_STYLE}">'
            f"<div>digest {html.escape(shown.period.key)}, {shown.posts} posts for"
            f' {html.escape(shown.email)} &middot; <a href="{html.escape(text_url)}">text part</a>'
            f"</div>{rows}</div>"
        )
        page = shown.rendered.html
        start = page.lower().find("<body")
        end = page.find(">", start) + 1 if start >= 0 else 0
        return self._answer(page[:end] + bar + page[end:])

    async def text(self, request: Request) -> Response:
        """``GET /_preview/digest.txt``: the plain-text part."""
        email = request.query_params.get("subscriber") or None
        try:
            shown = await run_in_threadpool(self._preview, email)
        except PublisherError as exc:
            return PlainTextResponse(str(exc) + "\n", status_code=500)
        if shown.rendered is None:
            return PlainTextResponse(f"{shown.email}: nothing new for digest {shown.period.key}\n")
        return PlainTextResponse(shown.rendered.text, headers={"Cache-Control": "no-store"})

    def _answer(self, page: str, status: int = 200) -> Response:
        return HTMLResponse(
            inject(page, self.live.problems),
            status_code=status,
            headers={"Cache-Control": "no-store", "Content-Security-Policy": PREVIEW_CSP},
        )


def _message_page(title: str, line: str) -> str:
    """A page holding one line (an error, or "nothing new"), reloading like the others."""
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f'</head><body><p id="publisher-preview-message">{html.escape(line)}</p></body></html>'
    )

"""The web app of ``publisher serve``: the routes, the error pages and the headers of every answer.

Routes (every link in an email points at ``server.base_url``)::

    GET  /subscribe                  the form (also at / when the site has no index.html)
    POST /subscribe                  queue a double opt-in request; same answer for everyone
    GET  /confirm/<token>            a page with a button; POST: the subscriber becomes active
    GET  /unsubscribe/<token>        a page with a button; never unsubscribes by itself
    POST /unsubscribe/<token>        the button, or RFC 8058 one-click (body
                                     ``List-Unsubscribe=One-Click``, no cookie, no form token)
    GET  /preferences/<token>        choose categories or leave; POST saves
    POST /webhooks/mailgun           a provider's bounce and complaint events (see
    POST /webhooks/postmark          :mod:`.webhooks`); 404 while their secret is unset
    POST /webhooks/ses               Amazon SES through SNS, signatures checked
    GET  /_publisher/web.css         the pages' stylesheet
    GET  /<anything else>            the built site (``paths.output``): the preview

The handlers are in :mod:`.subscribe`, :mod:`.links` and :mod:`.static`, and
what they share in :mod:`.context`; this module only wires them. Every form
post is refused (403) unless it carries a valid form token for that form and
its browser headers do not show another site. Nothing is ever redirected, so
no request can send a reader elsewhere, and no answer leaves without the
security headers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.config import Config
from publisher.store import Store
from publisher.web.context import MAX_BODY, Refused, WebContext, root_of
from publisher.web.digest_preview import DigestPreview
from publisher.web.links import LinkPages
from publisher.web.live import LiveReload
from publisher.web.pages import Pages, security_headers
from publisher.web.static import StaticFiles
from publisher.web.subscribe import SubscribeForm
from publisher.web.subscriptions import LOGGER_NAME
from publisher.web.webhooks import Webhooks

__all__ = ["MAX_BODY", "create_app"]

log = logging.getLogger(LOGGER_NAME)


class _SecurityHeaders:
    """Adds :func:`security_headers` to every response, whoever made it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in security_headers().items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", b"default-src 'none'"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _ErrorPages:
    """The answers to a refused form post (403) and to an HTTP error (a 404 page, or text)."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def refused(self, request: Request, exc: Exception) -> Response:
        log.warning("refused: %s", exc)
        return self.pages.message("expired_title", "expired", root=root_of(request), status=403)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return self.pages.message(
                "not_found_title", "not_found", root=root_of(request), status=404
            )
        return Response(
            exc.detail if isinstance(exc, HTTPException) else "error",
            status_code=status,
            media_type="text/plain; charset=utf-8",
            headers=getattr(exc, "headers", None),
        )


def create_app(
    config: Config,
    *,
    secret: bytes,
    clock: Callable[[], datetime] | None = None,
    store: Store | None = None,
    send: Callable[[EmailMessage], None] | None = None,
    fetch: Callable[[str], bytes] | None = None,
    live: LiveReload | None = None,
) -> Starlette:
    """The ASGI app for ``config``.

    ``secret`` signs links and form tokens (see :func:`publisher.mail.tokens.load_secret`);
    ``clock`` gives the time (default: now, in UTC); without ``store`` the app
    opens ``store.url`` when it starts and closes it when it stops; without
    ``send`` confirmations go through ``make_backend(config)``; ``fetch`` gets a
    URL's bytes for the SES webhook (SNS certificates; tests inject it). With
    ``live`` (``serve --watch``) the preview reloads itself and the digest
    preview is served (:mod:`.live`, :mod:`.digest_preview`).
    """
    web = WebContext(
        config,
        secret=secret,
        clock=clock or (lambda: datetime.now(UTC)),
        store=store,
        send=send,
    )
    subscribe = SubscribeForm(web)
    links = LinkPages(web)
    files = StaticFiles(web, home=subscribe.home, live=live)
    errors = _ErrorPages(web.pages)
    hooks = Webhooks(web, web.clock, fetch)
    routes = [
        Route("/subscribe", subscribe.form, methods=["GET"]),
        Route("/subscribe", subscribe.submit, methods=["POST"]),
        Route("/confirm/{token}", links.confirm_page, methods=["GET"]),
        Route("/confirm/{token}", links.confirm, methods=["POST"]),
        Route("/unsubscribe/{token}", links.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", links.unsubscribe, methods=["POST"]),
        Route("/preferences/{token}", links.preferences_page, methods=["GET"]),
        Route("/preferences/{token}", links.preferences, methods=["POST"]),
        Route("/webhooks/mailgun", hooks.mailgun, methods=["POST"]),
        Route("/webhooks/postmark", hooks.postmark, methods=["POST"]),
        Route("/webhooks/ses", hooks.ses, methods=["POST"]),
        Route("/_publisher/web.css", files.stylesheet, methods=["GET"]),
    ]
    if live is not None:
        digest = DigestPreview(web, live)
        routes += [
            Route("/_publisher/live", live.stream, methods=["GET"]),
            Route("/_publisher/live.js", live.script, methods=["GET"]),
            Route("/_preview/digest", digest.page, methods=["GET"]),
            Route("/_preview/digest.txt", digest.text, methods=["GET"]),
        ]
    routes.append(Route("/{path:path}", files.site, methods=["GET"]))
    app = Starlette(
        routes=routes,
        lifespan=web.lifespan,
        exception_handlers={
            Refused: errors.refused,
            HTTPException: errors.http_error,
        },
        max_body_size=MAX_BODY,
    )
    # Never answer with a redirect, not even /subscribe/ -> /subscribe.
    app.router.redirect_slashes = False
    app.add_middleware(_SecurityHeaders)
    app.state.web = web
    return app

"""The web app of ``publisher serve``: subscribe, confirm, unsubscribe, preferences, preview.

Routes (every link in an email points at ``server.base_url``)::

    GET  /subscribe                  the form (also at / when the site has no index.html)
    POST /subscribe                  queue a double opt-in request; same answer for everyone
    GET  /confirm/<token>            a page with a button; POST: the subscriber becomes active
    GET  /unsubscribe/<token>        a page with a button; never unsubscribes by itself
    POST /unsubscribe/<token>        the button, or RFC 8058 one-click (body
                                     ``List-Unsubscribe=One-Click``, no cookie, no form token)
    GET  /preferences/<token>        choose categories or leave; POST saves
    GET  /_publisher/web.css         the pages' stylesheet
    GET  /<anything else>            the built site (``paths.output``): the preview

Every form post is refused (403) unless it carries a valid form token for
that form and its browser headers do not show another site. Nothing is ever
redirected, so no request can send a reader elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import partial
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from publisher.config import Config
from publisher.errors import TokenError
from publisher.mail import make_backend
from publisher.mail.names import name_problem
from publisher.mail.tokens import make_token, verify_token
from publisher.site.templating import environment
from publisher.store import Store, clean_categories, email_problem, normalize_email
from publisher.web import preview
from publisher.web.categories import SiteCategories
from publisher.web.csrf import check_csrf, cross_site_problem, make_csrf, origin_of
from publisher.web.pages import PREVIEW_CSP, Pages, security_headers
from publisher.web.ratelimit import RateLimiter, client_key
from publisher.web.subscriptions import LOGGER_NAME, Jobs, Subscriptions

__all__ = ["MAX_BODY", "create_app"]

MAX_BODY = 16 * 1024  # no form of this app comes near it
log = logging.getLogger(LOGGER_NAME)


class _Refused(Exception):
    """A form post that must be refused with 403; the reason is logged, not shown."""


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


def _texts(form: FormData, name: str) -> list[str]:
    """Every text value of field ``name`` (a checkbox group sends one per box)."""
    return [v for v in form.getlist(name) if isinstance(v, str)]


def _root(request: Request) -> str:
    """The relative path from the page's URL back to the app's root ("", "../")."""
    return "../" * request.url.path.strip("/").count("/")


class WebApp:
    """The handlers and what they share; built by :func:`create_app`."""

    def __init__(
        self,
        config: Config,
        *,
        secret: bytes,
        clock: Callable[[], datetime],
        store: Store | None,
        send: Callable[[EmailMessage], None] | None,
    ) -> None:
        self.config = config
        self.secret = secret
        self.clock = clock
        self.env = environment(config.paths.templates)
        self.pages = Pages(config, self.env)
        self.categories = SiteCategories(config, clock)
        self.limiter = RateLimiter(config.server.subscribe_rate)
        self.jobs = Jobs()
        self.base_origin = origin_of(config.server.base_url or config.site.url)
        self._store = store
        self._own_store = store is None
        self._send = send or self._send_with_backend
        self._subs: Subscriptions | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        store: Store = (
            self._store
            if self._store is not None
            else await run_in_threadpool(Store.open, self.config)
        )
        self._subs = Subscriptions(
            self.config, store, secret=self.secret, clock=self.clock, send=self._send, env=self.env
        )
        self.jobs.start()
        try:
            yield
        finally:
            # Confirmations already promised are still sent before the store closes.
            await run_in_threadpool(self.jobs.stop)
            if self._own_store:
                store.close()

    @property
    def subs(self) -> Subscriptions:
        if self._subs is None:
            raise RuntimeError("the app has not started (its lifespan did not run)")
        return self._subs

    def _send_with_backend(self, message: EmailMessage) -> None:
        with make_backend(self.config) as backend:
            backend.send(message)

    # --- helpers ---------------------------------------------------------------------------

    def _subscriber_id(self, token: str, purpose: str) -> int | None:
        try:
            return verify_token(self.secret, token, purpose)
        except TokenError:
            return None

    def _csrf(self, purpose: str, token: str = "") -> str:
        return make_csrf(self.secret, f"{purpose}:{token}", self.clock())

    async def _form(self, request: Request) -> FormData:
        # A mail provider's one-click POST may be multipart; no form here takes files.
        return await request.form(max_files=0, max_fields=200, max_part_size=MAX_BODY)

    def _check_post(self, request: Request, form: FormData, purpose: str, token: str = "") -> None:
        """Raise _Refused unless the post comes from this app's own form for ``purpose``."""
        own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
        problem = cross_site_problem(request.headers, (self.base_origin, own))
        if problem is None:
            value = form.get("csrf")
            problem = check_csrf(
                self.secret,
                f"{purpose}:{token}",
                value if isinstance(value, str) else "",
                self.clock(),
            )
        if problem is not None:
            raise _Refused(f"{request.method} {purpose}: {problem}")

    def _invalid_link(self, request: Request) -> Response:
        return self.pages.message(
            "invalid_link_title", "invalid_link", root=_root(request), status=400
        )

    def _gone(self, request: Request, status: int = 404) -> Response:
        root = _root(request)
        return self.pages.message(
            "gone_title",
            "gone",
            root=root,
            status=status,
            links=((f"{root}subscribe", self.pages.text("subscribe_link")),),
        )

    def _preferences_link(self, request: Request, subscriber_id: int) -> str:
        token = make_token(self.secret, subscriber_id, "preferences")
        return f"{_root(request)}preferences/{token}"

    # --- subscribe -------------------------------------------------------------------------

    async def subscribe_form(self, request: Request) -> Response:
        return await self._subscribe_page(request, action="")

    async def _subscribe_page(
        self,
        request: Request,
        *,
        action: str,
        values: dict[str, Any] | None = None,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        categories = await run_in_threadpool(self.categories.names)
        return self.pages.render(
            "subscribe",
            root=_root(request),
            status=status,
            action=action,
            csrf=self._csrf("subscribe"),
            categories=categories,
            values=values or {"email": "", "name": "", "categories": ()},
            errors=errors or {},
        )

    async def subscribe(self, request: Request) -> Response:
        root = _root(request)
        host = request.client.host if request.client else "unknown"
        wait = self.limiter.take(client_key(host), self.clock().timestamp())
        if wait > 0:
            return self.pages.message(
                "too_many_title",
                "too_many",
                root=root,
                status=429,
                headers={"Retry-After": RateLimiter.retry_after(wait)},
            )
        form = await self._form(request)
        self._check_post(request, form, "subscribe")
        email = str(form.get("email") or "").strip()
        name = str(form.get("name") or "").strip()
        chosen = _texts(form, "categories")
        known = await run_in_threadpool(self.categories.names)
        errors: dict[str, str] = {}
        if email_problem(email) is not None:
            errors["email"] = self.pages.text("error_email")
        if name_problem(name) is not None:
            errors["name"] = self.pages.text("error_name")
        if any(c not in known for c in chosen):
            errors["categories"] = self.pages.text("error_categories")
        values = {"email": email, "name": name, "categories": tuple(chosen)}
        if errors:
            return await self._subscribe_page(
                request, action="", values=values, errors=errors, status=400
            )
        address = normalize_email(email)
        job = partial(self.subs.request, address, name, clean_categories(chosen))
        if not self.jobs.submit(job):
            return self.pages.message("busy_title", "busy", root=root, status=503)
        return self.pages.message(
            "check_inbox_title", "check_inbox", root=root, status=200, email=address
        )

    # --- confirm ---------------------------------------------------------------------------

    async def confirm_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "confirm")
        if subscriber_id is None:
            return self._invalid_link(request)
        subscriber = await run_in_threadpool(self.subs.get, subscriber_id)
        if subscriber is None:
            return self._gone(request)
        if subscriber.status == "active":
            return self._confirmed(request, subscriber_id, subscriber.email)
        return self.pages.render(
            "confirm",
            root=_root(request),
            subscriber=subscriber,
            csrf=self._csrf("confirm", token),
        )

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "confirm")
        if subscriber_id is None:
            return self._invalid_link(request)
        self._check_post(request, await self._form(request), "confirm", token)
        subscriber = await run_in_threadpool(self.subs.confirm, subscriber_id)
        if subscriber is None:
            return self._gone(request)
        return self._confirmed(request, subscriber_id, subscriber.email)

    def _confirmed(self, request: Request, subscriber_id: int, email: str) -> Response:
        return self.pages.message(
            "confirmed_title",
            "confirmed",
            root=_root(request),
            status=200,
            email=email,
            links=(
                (
                    self._preferences_link(request, subscriber_id),
                    self.pages.text("manage_preferences"),
                ),
            ),
        )

    # --- unsubscribe -----------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "unsubscribe")
        if subscriber_id is None:
            return self._invalid_link(request)
        subscriber = await run_in_threadpool(self.subs.get, subscriber_id)
        if subscriber is None:
            return self._gone(request)
        if subscriber.status == "unsubscribed":
            return self._unsubscribed(request, subscriber_id, subscriber.email)
        return self.pages.render(
            "unsubscribe",
            root=_root(request),
            subscriber=subscriber,
            csrf=self._csrf("unsubscribe", token),
            preferences_url=self._preferences_link(request, subscriber_id),
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "unsubscribe")
        if subscriber_id is None:
            return self._invalid_link(request)
        form = await self._form(request)
        # RFC 8058: a mail provider posts this body from its own servers, with no
        # cookie, no Origin and no form token; the signed link token is enough.
        if form.get("List-Unsubscribe") != "One-Click":
            self._check_post(request, form, "unsubscribe", token)
        subscriber = await run_in_threadpool(self.subs.unsubscribe, subscriber_id)
        if subscriber is None:
            # Removed from the list entirely: what was asked for is true.
            return self._gone(request, status=200)
        return self._unsubscribed(request, subscriber_id, subscriber.email)

    def _unsubscribed(self, request: Request, subscriber_id: int, email: str) -> Response:
        return self.pages.message(
            "unsubscribed_title",
            "unsubscribed",
            root=_root(request),
            status=200,
            email=email,
            links=(
                (self._preferences_link(request, subscriber_id), self.pages.text("changed_mind")),
            ),
        )

    # --- preferences -----------------------------------------------------------------------

    async def preferences_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "preferences")
        if subscriber_id is None:
            return self._invalid_link(request)
        subscriber = await run_in_threadpool(self.subs.get, subscriber_id)
        if subscriber is None:
            return self._gone(request)
        return await self._preferences(request, token, subscriber, subscriber.categories)

    async def _preferences(
        self,
        request: Request,
        token: str,
        subscriber: Any,
        chosen: tuple[str, ...],
        *,
        notice: str = "",
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        known = await run_in_threadpool(self.categories.names)
        # A category followed earlier but without posts now can still be unchecked.
        extra = tuple(c for c in subscriber.categories if c not in known)
        return self.pages.render(
            "preferences",
            root=_root(request),
            status=status,
            subscriber=subscriber,
            categories=known + extra,
            chosen=chosen,
            csrf=self._csrf("preferences", token),
            notice=notice,
            errors=errors or {},
        )

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "preferences")
        if subscriber_id is None:
            return self._invalid_link(request)
        form = await self._form(request)
        self._check_post(request, form, "preferences", token)
        current = await run_in_threadpool(self.subs.get, subscriber_id)
        if current is None:
            return self._gone(request)
        action = form.get("action")
        if action == "leave":
            subscriber = await run_in_threadpool(self.subs.unsubscribe, subscriber_id)
            if subscriber is None:
                return self._gone(request)
            return await self._preferences(
                request,
                token,
                subscriber,
                subscriber.categories,
                notice=self.pages.text("unsubscribed", email=subscriber.email),
            )
        if action != "save":
            raise HTTPException(400)
        chosen = clean_categories(_texts(form, "categories"))
        known = await run_in_threadpool(self.categories.names)
        if any(c not in known and c not in current.categories for c in chosen):
            return await self._preferences(
                request,
                token,
                current,
                chosen,
                errors={"categories": self.pages.text("error_categories")},
                status=400,
            )
        subscriber = await run_in_threadpool(
            partial(self.subs.save_preferences, subscriber_id, chosen, resume=True)
        )
        if subscriber is None:
            return self._gone(request)
        return await self._preferences(
            request, token, subscriber, subscriber.categories, notice=self.pages.text("saved")
        )

    # --- static ----------------------------------------------------------------------------

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.pages.stylesheet,
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    async def site(self, request: Request) -> Response:
        path = request.path_params.get("path", "")
        found = preview.find_file(self.config.paths.output, path)
        if found is None:
            if path.strip("/") == "":
                # No built site yet: the root shows the subscribe form.
                return await self._subscribe_page(request, action="subscribe")
            raise HTTPException(404)
        target, st = found
        etag = preview.etag_for(st)
        headers = {
            "ETag": etag,
            "Last-Modified": preview.last_modified(st),
            # A preview must show the latest build: revalidate every time (cheaply, by 304).
            "Cache-Control": "no-cache",
            "Content-Security-Policy": PREVIEW_CSP,
        }
        if preview.is_not_modified(request.headers, etag, st):
            return Response(status_code=304, headers=headers)
        return FileResponse(
            target, media_type=preview.media_type(target.name), headers=headers, stat_result=st
        )

    # --- errors ----------------------------------------------------------------------------

    async def refused(self, request: Request, exc: Exception) -> Response:
        log.warning("refused: %s", exc)
        return self.pages.message("expired_title", "expired", root=_root(request), status=403)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            return self.pages.message(
                "not_found_title", "not_found", root=_root(request), status=404
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
) -> Starlette:
    """The ASGI app for ``config``.

    ``secret`` signs links and form tokens (see :func:`publisher.mail.tokens.load_secret`);
    ``clock`` gives the time (default: now, in UTC); without ``store`` the app
    opens ``store.url`` when it starts and closes it when it stops; without
    ``send`` confirmations go through ``make_backend(config)``.
    """
    web = WebApp(
        config,
        secret=secret,
        clock=clock or (lambda: datetime.now(UTC)),
        store=store,
        send=send,
    )
    routes = [
        Route("/subscribe", web.subscribe_form, methods=["GET"]),
        Route("/subscribe", web.subscribe, methods=["POST"]),
        Route("/confirm/{token}", web.confirm_page, methods=["GET"]),
        Route("/confirm/{token}", web.confirm, methods=["POST"]),
        Route("/unsubscribe/{token}", web.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["POST"]),
        Route("/preferences/{token}", web.preferences_page, methods=["GET"]),
        Route("/preferences/{token}", web.preferences, methods=["POST"]),
        Route("/_publisher/web.css", web.stylesheet, methods=["GET"]),
        Route("/{path:path}", web.site, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=web.lifespan,
        exception_handlers={
            _Refused: web.refused,
            HTTPException: web.http_error,
        },
        max_body_size=MAX_BODY,
    )
    # Never answer with a redirect, not even /subscribe/ -> /subscribe.
    app.router.redirect_slashes = False
    app.add_middleware(_SecurityHeaders)
    app.state.web = web
    return app

"""What every handler of ``publisher serve`` shares: settings, store, pages, and the form checks.

:class:`WebContext` holds the config, the secret, the clock, the pages, the
site's categories, the rate limiter and the confirmation queue; its
:meth:`~WebContext.lifespan` opens the store (unless one was given) and starts
the :class:`~publisher.web.subscriptions.Subscriptions` the handlers act
through. :meth:`~WebContext.check_post` is the one gate every form post goes
through: a valid form token for that form, and browser headers that do not
show another site; otherwise :class:`Refused` (a 403 in :mod:`.app`).

Nothing here answers a request or knows a route: the handlers are in
:mod:`.subscribe`, :mod:`.links` and :mod:`.static`, wired in :mod:`.app`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from email.message import EmailMessage

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request

from publisher.config import Config
from publisher.mail import make_backend
from publisher.site.templating import environment
from publisher.store import Store
from publisher.web.categories import SiteCategories
from publisher.web.csrf import check_csrf, cross_site_problem, make_csrf, origin_of
from publisher.web.pages import Pages
from publisher.web.ratelimit import RateLimiter
from publisher.web.subscriptions import Jobs, Subscriptions

__all__ = ["MAX_BODY", "Refused", "WebContext", "form_texts", "root_of"]

MAX_BODY = 16 * 1024  # no form of this app comes near it


class Refused(Exception):
    """A form post that must be refused with 403; the reason is logged, not shown."""


def form_texts(form: FormData, name: str) -> list[str]:
    """Every text value of field ``name`` (a checkbox group sends one per box)."""
    return [v for v in form.getlist(name) if isinstance(v, str)]


def root_of(request: Request) -> str:
    """The relative path from the page's URL back to the app's root ("", "../")."""
    return "../" * request.url.path.strip("/").count("/")


class WebContext:
    """The state and the checks the handlers share; built by :func:`.app.create_app`."""

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
        self._opened: Store | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        store: Store = (
            self._store
            if self._store is not None
            else await run_in_threadpool(Store.open, self.config)
        )
        self._opened = store
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
    def store(self) -> Store:
        """The store, once the app has started."""
        if self._opened is None:
            raise RuntimeError("the app has not started (its lifespan did not run)")
        return self._opened

    @property
    def subs(self) -> Subscriptions:
        if self._subs is None:
            raise RuntimeError("the app has not started (its lifespan did not run)")
        return self._subs

    def _send_with_backend(self, message: EmailMessage) -> None:
        with make_backend(self.config) as backend:
            backend.send(message)

    # --- forms -----------------------------------------------------------------------------

    def csrf(self, purpose: str, token: str = "") -> str:
        """A form token for the form of ``purpose`` (and the link ``token`` it belongs to)."""
        return make_csrf(self.secret, f"{purpose}:{token}", self.clock())

    async def form(self, request: Request) -> FormData:
        # A mail provider's one-click POST may be multipart; no form here takes files.
        return await request.form(max_files=0, max_fields=200, max_part_size=MAX_BODY)

    def check_post(self, request: Request, form: FormData, purpose: str, token: str = "") -> None:
        """Raise Refused unless the post comes from this app's own form for ``purpose``."""
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
            raise Refused(f"{request.method} {purpose}: {problem}")

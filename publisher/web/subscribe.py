"""The subscribe form of ``publisher serve``: ``GET /subscribe`` and ``POST /subscribe``.

A post is rate limited per client, checked (form token, address, name,
categories) and then only queued: the double opt-in work runs in
:class:`~publisher.web.subscriptions.Jobs`, so the answer is the same, and
takes the same time, whoever the address belongs to. This module must never
touch the store from a request, nor answer differently for an address already
on the list.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from publisher.mail.names import name_problem
from publisher.store import clean_categories, email_problem, normalize_email
from publisher.web.context import WebContext, form_texts, root_of
from publisher.web.ratelimit import RateLimiter, client_key

__all__ = ["SubscribeForm"]


class SubscribeForm:
    """The subscribe form's handlers; :meth:`home` is the form at the root of an unbuilt site."""

    def __init__(self, web: WebContext) -> None:
        self.web = web

    async def form(self, request: Request) -> Response:
        return await self.page(request, action="")

    async def home(self, request: Request) -> Response:
        """The form shown at ``/`` while there is no built site; it posts to ``subscribe``."""
        return await self.page(request, action="subscribe")

    async def page(
        self,
        request: Request,
        *,
        action: str,
        values: dict[str, Any] | None = None,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        web = self.web
        categories = await run_in_threadpool(web.categories.names)
        return web.pages.render(
            "subscribe",
            root=root_of(request),
            status=status,
            action=action,
            csrf=web.csrf("subscribe"),
            categories=categories,
            values=values or {"email": "", "name": "", "categories": ()},
            errors=errors or {},
        )

    async def submit(self, request: Request) -> Response:
        web = self.web
        root = root_of(request)
        host = request.client.host if request.client else "unknown"
        wait = web.limiter.take(client_key(host), web.clock().timestamp())
        if wait > 0:
            return web.pages.message(
                "too_many_title",
                "too_many",
                root=root,
                status=429,
                headers={"Retry-After": RateLimiter.retry_after(wait)},
            )
        form = await web.form(request)
        web.check_post(request, form, "subscribe")
        email = str(form.get("email") or "").strip()
        name = str(form.get("name") or "").strip()
        chosen = form_texts(form, "categories")
        known = await run_in_threadpool(web.categories.names)
        errors: dict[str, str] = {}
        if email_problem(email) is not None:
            errors["email"] = web.pages.text("error_email")
        if name_problem(name) is not None:
            errors["name"] = web.pages.text("error_name")
        if any(c not in known for c in chosen):
            errors["categories"] = web.pages.text("error_categories")
        values = {"email": email, "name": name, "categories": tuple(chosen)}
        if errors:
            return await self.page(request, action="", values=values, errors=errors, status=400)
        address = normalize_email(email)
        job = partial(web.subs.request, address, name, clean_categories(chosen))
        if not web.jobs.submit(job):
            return web.pages.message("busy_title", "busy", root=root, status=503)
        return web.pages.message(
            "check_inbox_title", "check_inbox", root=root, status=200, email=address
        )

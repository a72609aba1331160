"""The pages an email links to: confirm, unsubscribe (RFC 8058 one-click too), preferences.

Every path carries a signed token naming one subscriber and what the link is
for (``confirm``, ``unsubscribe``, ``preferences``); a token for one purpose
opens no other page. A GET only shows a page with a button: a link scanner
that fetches every URL of a message must never confirm, unsubscribe or change
anything. A POST acts, after :meth:`.context.WebContext.check_post`; the one
exception is RFC 8058's one-click unsubscribe, which a mail provider posts
from its own servers with no cookie and no form token.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from publisher.errors import TokenError
from publisher.mail.tokens import make_token, verify_token
from publisher.store import clean_categories
from publisher.web.context import WebContext, form_texts, root_of

__all__ = ["LinkPages"]


class LinkPages:
    """The handlers of ``/confirm/<token>``, ``/unsubscribe/<token>``, ``/preferences/<token>``."""

    def __init__(self, web: WebContext) -> None:
        self.web = web
        self.pages = web.pages

    # --- helpers ---------------------------------------------------------------------------

    def _subscriber_id(self, token: str, purpose: str) -> int | None:
        try:
            return verify_token(self.web.secret, token, purpose)
        except TokenError:
            return None

    def _invalid_link(self, request: Request) -> Response:
        return self.pages.message(
            "invalid_link_title", "invalid_link", root=root_of(request), status=400
        )

    def _gone(self, request: Request, status: int = 404) -> Response:
        root = root_of(request)
        return self.pages.message(
            "gone_title",
            "gone",
            root=root,
            status=status,
            links=((f"{root}subscribe", self.pages.text("subscribe_link")),),
        )

    def _preferences_link(self, request: Request, subscriber_id: int) -> str:
        token = make_token(self.web.secret, subscriber_id, "preferences")
        return f"{root_of(request)}preferences/{token}"

    # --- confirm ---------------------------------------------------------------------------

    async def confirm_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "confirm")
        if subscriber_id is None:
            return self._invalid_link(request)
        subscriber = await run_in_threadpool(self.web.subs.get, subscriber_id)
        if subscriber is None:
            return self._gone(request)
        if subscriber.status == "active":
            return self._confirmed(request, subscriber_id, subscriber.email)
        return self.pages.render(
            "confirm",
            root=root_of(request),
            subscriber=subscriber,
            csrf=self.web.csrf("confirm", token),
        )

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "confirm")
        if subscriber_id is None:
            return self._invalid_link(request)
        self.web.check_post(request, await self.web.form(request), "confirm", token)
        subscriber = await run_in_threadpool(self.web.subs.confirm, subscriber_id)
        if subscriber is None:
            return self._gone(request)
        return self._confirmed(request, subscriber_id, subscriber.email)

    def _confirmed(self, request: Request, subscriber_id: int, email: str) -> Response:
        return self.pages.message(
            "confirmed_title",
            "confirmed",
            root=root_of(request),
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
        subscriber = await run_in_threadpool(self.web.subs.get, subscriber_id)
        if subscriber is None:
            return self._gone(request)
        if subscriber.status == "unsubscribed":
            return self._unsubscribed(request, subscriber_id, subscriber.email)
        return self.pages.render(
            "unsubscribe",
            root=root_of(request),
            subscriber=subscriber,
            csrf=self.web.csrf("unsubscribe", token),
            preferences_url=self._preferences_link(request, subscriber_id),
        )

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "unsubscribe")
        if subscriber_id is None:
            return self._invalid_link(request)
        form = await self.web.form(request)
        # RFC 8058: a mail provider posts this body from its own servers, with no
        # cookie, no Origin and no form token; the signed link token is enough.
        if form.get("List-Unsubscribe") != "One-Click":
            self.web.check_post(request, form, "unsubscribe", token)
        subscriber = await run_in_threadpool(self.web.subs.unsubscribe, subscriber_id)
        if subscriber is None:
            # Removed from the list entirely: what was asked for is true.
            return self._gone(request, status=200)
        return self._unsubscribed(request, subscriber_id, subscriber.email)

    def _unsubscribed(self, request: Request, subscriber_id: int, email: str) -> Response:
        return self.pages.message(
            "unsubscribed_title",
            "unsubscribed",
            root=root_of(request),
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
        subscriber = await run_in_threadpool(self.web.subs.get, subscriber_id)
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
        known = await run_in_threadpool(self.web.categories.names)
        # A category followed earlier but without posts now can still be unchecked.
        extra = tuple(c for c in subscriber.categories if c not in known)
        return self.pages.render(
            "preferences",
            root=root_of(request),
            status=status,
            subscriber=subscriber,
            categories=known + extra,
            chosen=chosen,
            csrf=self.web.csrf("preferences", token),
            notice=notice,
            errors=errors or {},
        )

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self._subscriber_id(token, "preferences")
        if subscriber_id is None:
            return self._invalid_link(request)
        form = await self.web.form(request)
        self.web.check_post(request, form, "preferences", token)
        current = await run_in_threadpool(self.web.subs.get, subscriber_id)
        if current is None:
            return self._gone(request)
        action = form.get("action")
        if action == "leave":
            subscriber = await run_in_threadpool(self.web.subs.unsubscribe, subscriber_id)
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
        chosen = clean_categories(form_texts(form, "categories"))
        known = await run_in_threadpool(self.web.categories.names)
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
            partial(self.web.subs.save_preferences, subscriber_id, chosen, resume=True)
        )
        if subscriber is None:
            return self._gone(request)
        return await self._preferences(
            request, token, subscriber, subscriber.categories, notice=self.pages.text("saved")
        )

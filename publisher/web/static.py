"""The files ``publisher serve`` serves: the pages' stylesheet and the built site (the preview).

``GET /_publisher/web.css`` is the one stylesheet of the app's pages, rendered
once at start; pages link it with a ``?v=`` of its hash, so browsers may cache
it for good. Every other GET path is a file of ``paths.output``, found and
described by :mod:`.preview` (media type, ETag, Last-Modified, 304s) and
served under the preview's own Content-Security-Policy (with ``serve --watch``,
HTML pages get the live-reload script on the way out: :mod:`.live`); at ``/`` with no built
site the subscribe form stands in. This module must never serve anything
outside the output folder (:func:`.preview.find_file` sees to it), nor cache a
preview file without revalidating it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from publisher.web import preview
from publisher.web.context import WebContext
from publisher.web.live import LiveReload, inject
from publisher.web.pages import PREVIEW_CSP

__all__ = ["StaticFiles"]


class StaticFiles:
    """The stylesheet and built-site handlers; ``home`` answers ``/`` when nothing is built."""

    def __init__(
        self,
        web: WebContext,
        *,
        home: Callable[[Request], Awaitable[Response]],
        live: LiveReload | None = None,
    ) -> None:
        self.web = web
        self.home = home
        self.live = live

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.web.pages.stylesheet,
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )

    async def site(self, request: Request) -> Response:
        path = request.path_params.get("path", "")
        found = preview.find_file(self.web.config.paths.output, path)
        if found is None:
            if path.strip("/") == "":
                # No built site yet: the root shows the subscribe form.
                return await self.home(request)
            raise HTTPException(404)
        target, st = found
        media = preview.media_type(target.name)
        if self.live is not None and media.startswith("text/html"):
            # Live preview: the page as built, with the reload script (and the last
            # build's problems) added on the way out; the file itself stays as built.
            page = target.read_bytes().decode("utf-8", "replace")
            return HTMLResponse(
                inject(page, self.live.problems),
                headers={"Cache-Control": "no-store", "Content-Security-Policy": PREVIEW_CSP},
            )
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
        return FileResponse(target, media_type=media, headers=headers, stat_result=st)

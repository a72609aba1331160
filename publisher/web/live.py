"""The live preview of ``publisher serve --watch``: pages that reload themselves on a save.

:class:`LiveReload` is what the watcher and the app share: a version number
that each rebuild (or template change) bumps, and the problems of the last
build (a broken post's one line). The app then:

* streams the version to every open preview page as server-sent events
  (``GET /_publisher/live``); the page's script reloads it when the version
  moves, so a page follows a save within the watcher's settle time;
* injects that script (``/_publisher/live.js``) and, when the last build
  rejected something, a banner with its lines, into the HTML it serves
  (:func:`inject`); never into the built files, which stay as published.

The script is a file of its own, not inline: the preview's
Content-Security-Policy allows only scripts from this origin.
"""

from __future__ import annotations

import asyncio
import html
import threading
from collections.abc import AsyncIterator, Sequence

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from publisher.config import Config

__all__ = ["LIVE_SCRIPT", "LiveReload", "inject"]

#: How often an open stream looks at the version; a reload follows a build by this much.
POLL_SECONDS = 0.1
#: A comment line this often keeps proxies and the browser from dropping an idle stream.
KEEPALIVE_SECONDS = 15.0

LIVE_SCRIPT = """\
// publisher serve --watch: reload this page when the site is rebuilt.
(function () {
  var seen = null;
  var source = new EventSource("/_publisher/live");
  source.onmessage = function (event) {
    if (seen === null) { seen = event.data; return; }
    if (event.data !== seen) { source.close(); window.location.reload(); }
  };
})();
"""

_TAG = '<script src="/_publisher/live.js" defer></script>'
_BANNER_STYLE = (
    "position:fixed;left:0;right:0;bottom:0;z-index:2147483647;margin:0;padding:.6em 1em;"
    "background:#7a1010;color:#fff;font:13px/1.4 ui-monospace,monospace;white-space:pre-wrap"
)


class LiveReload:
    """The version the open pages follow, and the last build's problems; thread-safe.

    ``config`` is the config as last reloaded after a save (None: the app's own),
    for what is rendered on each request, such as the digest preview.
    """

    def __init__(self) -> None:
        self.config: Config | None = None
        self._lock = threading.Lock()
        self._version = 0
        self._problems: tuple[str, ...] = ()
        self._closed = False

    def close(self) -> None:
        """The server is stopping: every open stream ends (the browsers retry later)."""
        self._closed = True

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    @property
    def problems(self) -> tuple[str, ...]:
        with self._lock:
            return self._problems

    def changed(self, problems: Sequence[str] | None = None) -> None:
        """Something the pages show changed: open pages reload. ``problems``: the build's."""
        with self._lock:
            self._version += 1
            if problems is not None:
                self._problems = tuple(problems)

    async def stream(self, request: Request) -> Response:
        """``GET /_publisher/live``: the version now, then each new one, as server-sent events."""

        async def events() -> AsyncIterator[str]:
            last = self.version
            yield f"retry: 500\ndata: {last}\n\n"
            quiet = 0.0
            while not self._closed and not await request.is_disconnected():
                await asyncio.sleep(POLL_SECONDS)
                version = self.version
                if version != last:
                    last, quiet = version, 0.0
                    yield f"data: {version}\n\n"
                else:
                    quiet += POLL_SECONDS
                    if quiet >= KEEPALIVE_SECONDS:
                        quiet = 0.0
                        yield ": still here\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def script(self, request: Request) -> Response:
        """``GET /_publisher/live.js``."""
        return Response(
            LIVE_SCRIPT,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )


def inject(page: str, problems: Sequence[str] = ()) -> str:
    """``page`` with the live script, and a banner of ``problems``, before its ``</body>``."""
    added = _TAG
    if problems:
        lines = "\n".join(html.escape(line) for line in problems)
        added = f'<pre id="publisher-problems" style="{_BANNER_STYLE}">{lines}</pre>' + added
    index = page.lower().rfind("</body>")
    if index < 0:
        return page + added
    return page[:index] + added + page[index:]

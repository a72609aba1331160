"""``publisher serve``: subscribe (double opt-in), confirm, unsubscribe (RFC 8058), preferences.

:func:`create_app` (:mod:`.app`) builds the Starlette app: the routes, the error
pages and the security headers of every answer. Its handlers: :mod:`.subscribe`
(the subscribe form), :mod:`.links` (the confirm, unsubscribe and preferences
pages an email links to) and :mod:`.static` (the stylesheet and the built site);
:mod:`.context` is what they share (settings, store, the form checks).
Underneath: :mod:`.subscriptions` changes the subscriber list and queues
confirmations, sent as :mod:`.confirmation` words them; :mod:`.pages` renders
the HTML, in the words of :mod:`.labels`; :mod:`.csrf` signs and checks form
tokens; :mod:`.ratelimit` slows down a client that subscribes too often;
:mod:`.categories` lists the site's categories; :mod:`.preview` finds and
describes the built site's files. :func:`serve_in_thread` (:mod:`.server`)
runs the app beside ``publisher run`` and returns a handle with ``.stop()``.

Nothing here builds the site or sends a digest: the preview only reads
``paths.output``.
"""

from __future__ import annotations

from publisher.web.app import create_app
from publisher.web.server import ServerHandle, serve_in_thread

__all__ = ["ServerHandle", "create_app", "serve_in_thread"]

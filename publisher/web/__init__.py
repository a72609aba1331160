"""``publisher serve``: subscribe (double opt-in), confirm, unsubscribe (RFC 8058), preferences.

:func:`create_app` builds the Starlette app; :func:`serve_in_thread` runs it
beside ``publisher run`` and returns a handle with ``.stop()``.
"""

from __future__ import annotations

from publisher.web.app import create_app
from publisher.web.server import ServerHandle, serve_in_thread

__all__ = ["ServerHandle", "create_app", "serve_in_thread"]

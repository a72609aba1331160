"""Running the web app on uvicorn: in the foreground (``publisher serve``) or in a thread.

The listening socket is opened here, before uvicorn starts, so that a port
already in use is one clear error line, and so that ``--port 0`` can take any
free port and say which (the tests use that, so two runs never race for one).

Access log lines name the URL path, and link tokens are in paths: they are
written as ``/unsubscribe/…`` instead, so a log is no key to anyone's
subscription.

It never believes ``X-Forwarded-For`` except from a proxy that
``server.trusted_proxies`` names.
"""

from __future__ import annotations

import copy
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from types import FrameType
from typing import Any

import uvicorn

from publisher.config import Config
from publisher.errors import PublisherError
from publisher.store import Store
from publisher.web.app import create_app
from publisher.web.live import LiveReload
from publisher.web.subscriptions import LOGGER_NAME

__all__ = ["ServerHandle", "TokenRedactor", "open_socket", "serve_forever", "serve_in_thread"]

_TOKEN_PATH = re.compile(r"/(unsubscribe|preferences|confirm)/[^/?\s\"]+")


class TokenRedactor(logging.Filter):
    """Replaces link tokens in log lines with an ellipsis."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_PATH.sub(r"/\1/…", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_PATH.sub(r"/\1/…", record.msg)
        return True


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: any free port).

    Raises PublisherError naming the address when it cannot be had.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise PublisherError(f"server.host {host!r}: cannot be resolved: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PublisherError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _display(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn(config: Config, app: Any, *, log_config: dict[str, Any] | None) -> uvicorn.Server:
    trusted = list(config.server.trusted_proxies)
    settings = uvicorn.Config(
        app,
        log_config=log_config,
        # X-Forwarded-For is believed only from the proxies the config names.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactor) for f in logger.filters):
            logger.addFilter(TokenRedactor())
    return uvicorn.Server(settings)


def serve_forever(
    config: Config,
    sock: socket.socket,
    *,
    secret: bytes,
    clock: Callable[[], datetime] | None = None,
    store: Store | None = None,
    send: Callable[[EmailMessage], None] | None = None,
    live: LiveReload | None = None,
) -> None:
    """Serve on ``sock`` until SIGINT or SIGTERM (uvicorn's own logging to stderr).

    With ``live``, the live preview of ``serve --watch`` (:mod:`.live`).
    """
    app = create_app(config, secret=secret, clock=clock, store=store, send=send, live=live)
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    # The app's own lines (refused forms, unsent confirmations) beside uvicorn's.
    log_config["loggers"][LOGGER_NAME] = {"handlers": ["default"], "level": "INFO"}
    server = _uvicorn(config, app, log_config=log_config)
    if live is not None:
        # Open event streams would hold a graceful shutdown for its whole timeout.
        stop = server.handle_exit

        def handle_exit(sig: int, frame: FrameType | None) -> None:
            live.close()
            stop(sig, frame)

        server.handle_exit = handle_exit  # type: ignore[method-assign]
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise PublisherError("the web server could not start (see the lines above)")


class ServerHandle:
    """A server running in a thread; :meth:`stop` ends it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket):
        self._server = server
        self._thread = thread
        self._sock = sock
        self.url = _display(sock)  # where it listens, e.g. http://127.0.0.1:8000

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        """Finish the requests in progress and the queued confirmations, then stop."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()


def serve_in_thread(
    config: Config,
    *,
    secret: bytes | None = None,
    clock: Callable[[], datetime] | None = None,
    host: str | None = None,
    port: int | None = None,
    startup_timeout: float = 30.0,
    fetch: Callable[[str], bytes] | None = None,
) -> ServerHandle:
    """Start the web app in a daemon thread (for ``publisher run`` with ``server.in_run``).

    Listens on ``server.host``/``server.port`` unless told otherwise; returns once
    the app has started. Raises ConfigError when the secret is missing and
    PublisherError when the port cannot be had or the app cannot start.
    Logs go to the ``uvicorn.*`` and ``publisher.web`` loggers, unconfigured:
    the calling program decides where they are written. ``fetch`` replaces the
    SES webhook's download of SNS certificates (tests).
    """
    from publisher.mail.tokens import load_secret

    key = secret if secret is not None else load_secret(config)
    sock = open_socket(host or config.server.host, config.server.port if port is None else port)
    try:
        app = create_app(config, secret=key, clock=clock, fetch=fetch)
        server = _uvicorn(config, app, log_config=None)
    except BaseException:
        sock.close()
        raise
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="publisher-web", daemon=True
    )
    thread.start()
    handle = ServerHandle(server, thread, sock)
    # uvicorn sets .started once the app's lifespan has run and it accepts connections.
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            handle.stop(1)
            raise PublisherError("the web server could not start (see the log)")
        thread.join(0.02)
    return handle

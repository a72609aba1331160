"""``publisher serve``: the subscribe/unsubscribe pages and a preview of the built site.

With ``--watch`` it is a live preview, as ``hugo server`` is: it builds, rebuilds
on every save (the watcher of ``publisher run``), and open pages reload
themselves; ``/_preview/digest`` shows the next digest. Never answers a request
itself: the app and its server are :mod:`publisher.web`'s.
"""

from __future__ import annotations

import logging
import secrets
import threading
from typing import TYPE_CHECKING

import click

from publisher.cli.main import State
from publisher.errors import ConfigError, PublisherError

if TYPE_CHECKING:
    from publisher.build.cache import BuildCache
    from publisher.config import Config
    from publisher.schedule.watch import Batch
    from publisher.web.live import LiveReload

__all__ = ["serve"]


class LivePreview:
    """Builds the site, and again after every relevant save, telling open pages to reload.

    A broken post or template never stops it: its lines become the problems the
    preview pages show, and the last good version of everything else stays.
    """

    def __init__(self, state: State, config: Config, live: LiveReload) -> None:
        self.state = state
        self.config = config
        self.live = live
        self._cache: BuildCache | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def build(self, reason: str) -> None:
        """Build now; say how it went in one line; never raise."""
        from publisher.build.pipeline import build

        with self._lock:
            try:
                result = build(
                    self.config, now=self.state.clock(), keep_last_good=True, cache=self._cache
                )
            except (PublisherError, OSError) as exc:
                click.echo(f"preview: build failed ({reason}): {exc}", err=True)
                self.live.changed(str(exc).splitlines())
                return
            self._cache = result.cache
            problems = [str(e) for e in result.errors]
            problems += [f"{e} (kept its last good version)" for e in result.stale]
            for line in problems:
                click.echo(line, err=True)
            click.echo(
                f"preview: built {result.published} posts in {result.seconds:.2f}s,"
                f" {len(result.written)} files written ({reason})",
                err=True,
            )
            self.live.changed(problems)

    def on_batch(self, batch: Batch) -> None:
        """A settled burst of saves: reload the config if it changed, then rebuild."""
        from publisher.config import load_config

        if "config" in batch.kinds and self.config.source is not None:
            try:
                self.config = self.live.config = load_config(self.config.source)
            except ConfigError as exc:
                click.echo(f"preview: config not reloaded: {exc}", err=True)
                self.live.changed(str(exc).splitlines())
                return
        self.build(", ".join(sorted(batch.kinds)) + " changed")

    def start(self) -> None:
        """Build once, then watch (returns once the watches are in place)."""
        from publisher.schedule.watch import Watcher

        self.build("start")
        watcher = Watcher(
            lambda: self.config, self.on_batch, self._stop, logging.getLogger("publisher.serve")
        )
        if not watcher.start():
            click.echo("preview: the watches took long to start; saves may be missed", err=True)

    def stop(self) -> None:
        self._stop.set()


@click.command()
@click.option("--host", help="Address to listen on (default: server.host, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on (default: server.port, 8000); 0 takes any free port.",
)
@click.option(
    "--watch",
    is_flag=True,
    help=(
        "Live preview: build now and after every save, reload open pages, and show the"
        " next digest at /_preview/digest."
    ),
)
@click.pass_obj
def serve(state: State, host: str | None, port: int | None, watch: bool) -> None:
    """Serve subscribe, confirm, unsubscribe and preferences pages, and the built site.

    Links in emails point at server.base_url (default: site.url); put this
    server behind that address. Runs until Ctrl-C or SIGTERM.
    """
    from publisher.mail.headers import sender
    from publisher.mail.tokens import load_secret
    from publisher.store import Store
    from publisher.web.live import LiveReload
    from publisher.web.server import open_socket, serve_forever

    config = state.config
    try:
        secret = load_secret(config)
    except ConfigError:
        if not watch:
            raise
        # A preview on a new site needs no secret of the writer's: its forms still work.
        secret = secrets.token_bytes(32)
        click.echo(
            f"preview: {config.store.secret_env} is not set; this preview signs its links"
            " with a throwaway secret",
            err=True,
        )
    try:
        sender(config)  # confirmations need a From address: say so now, not at the first form
    except PublisherError as exc:
        if not watch:
            raise
        click.echo(f"preview: subscribing will not work: {exc}", err=True)
    live = LiveReload() if watch else None
    preview = LivePreview(state, config, live) if live is not None else None
    with Store.open(config) as store:
        sock = open_socket(host or config.server.host, config.server.port if port is None else port)
        name, bound_port = sock.getsockname()[:2]
        shown = f"[{name}]" if ":" in name else name
        if preview is not None:
            preview.start()
        url = f"http://{shown}:{bound_port}/"
        click.echo(
            f"serving {url} (links in emails point at"
            f" {config.server.base_url or config.site.url}); press Ctrl-C to stop"
        )
        if preview is not None:
            click.echo(f"live preview: pages reload on save; the next digest: {url}_preview/digest")
        try:
            serve_forever(config, sock, secret=secret, clock=state.clock, store=store, live=live)
        finally:
            if preview is not None:
                preview.stop()

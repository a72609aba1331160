"""``publisher serve``: the subscribe/unsubscribe pages and a preview of the built site.

Never answers a request itself: the app and its server are :mod:`publisher.web`'s.
"""

from __future__ import annotations

import click

from publisher.cli.main import State

__all__ = ["serve"]


@click.command()
@click.option("--host", help="Address to listen on (default: server.host, 127.0.0.1).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    help="Port to listen on (default: server.port, 8000); 0 takes any free port.",
)
@click.pass_obj
def serve(state: State, host: str | None, port: int | None) -> None:
    """Serve subscribe, confirm, unsubscribe and preferences pages, and the built site.

    Links in emails point at server.base_url (default: site.url); put this
    server behind that address. Runs until Ctrl-C or SIGTERM.
    """
    from publisher.mail.headers import sender
    from publisher.mail.tokens import load_secret
    from publisher.store import Store
    from publisher.web.server import open_socket, serve_forever

    config = state.config
    secret = load_secret(config)
    sender(config)  # confirmations need a From address: say so now, not at the first form
    with Store.open(config) as store:
        sock = open_socket(host or config.server.host, config.server.port if port is None else port)
        name, bound_port = sock.getsockname()[:2]
        shown = f"[{name}]" if ":" in name else name
        click.echo(
            f"serving http://{shown}:{bound_port}/ (links in emails point at"
            f" {config.server.base_url or config.site.url}); press Ctrl-C to stop"
        )
        serve_forever(config, sock, secret=secret, clock=state.clock, store=store)

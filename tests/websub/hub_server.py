"""A real WebSub hub stand-in: an HTTP server on 127.0.0.1 that records the pings it gets."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

__all__ = ["Hub", "hub_server"]


class Hub:
    """What the server got, and how it answers: 503 for the next ``fail_next`` requests."""

    def __init__(self) -> None:
        self.url = ""
        self.pings: list[dict[str, list[str]]] = []
        self.content_types: list[str] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def topics(self) -> list[str]:
        with self.lock:
            return [ping["hub.url"][0] for ping in self.pings]

    def clear(self) -> None:
        with self.lock:
            self.pings.clear()


@contextmanager
def hub_server() -> Iterator[Hub]:
    hub = Hub()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("ascii")
            with hub.lock:
                failing = hub.fail_next > 0
                if failing:
                    hub.fail_next -= 1
                else:
                    hub.pings.append(parse_qs(body))
                    hub.content_types.append(self.headers.get("Content-Type", ""))
            self.send_response(503 if failing else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}/hub"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

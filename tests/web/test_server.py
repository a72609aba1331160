"""Running the app in a thread (for ``publisher run``) and keeping tokens out of logs."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from publisher.errors import PublisherError
from publisher.web import serve_in_thread
from publisher.web.server import TokenRedactor, open_socket
from tests.conftest import Site


def test_serve_in_thread_serves_until_stopped(site: Site) -> None:
    site.write_config(site={"email": "news@example.com"})
    handle = serve_in_thread(site.config(), secret=b"secret", host="127.0.0.1", port=0)
    try:
        assert handle.running
        with httpx.Client(base_url=handle.url) as http:
            response = http.get("/subscribe")
        assert response.status_code == 200
        assert 'lang="ja"' in response.text
    finally:
        handle.stop()
    assert not handle.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(handle.url + "/subscribe", timeout=2)


def test_serve_in_thread_needs_the_secret(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_SECRET", raising=False)
    with pytest.raises(PublisherError, match="PUBLISHER_SECRET"):
        serve_in_thread(site.config(), port=0)


def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(PublisherError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: "):
            open_socket("127.0.0.1", port)


def test_tokens_are_redacted_from_log_lines() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/unsubscribe/v1.7.SIGNATURE?x=1", "1.1", 200),
        None,
    )
    assert TokenRedactor().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "POST /unsubscribe/…?x=1 HTTP/1.1" 200'
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /confirm/v1.2.abc", None, None)
    TokenRedactor().filter(plain)
    assert plain.getMessage() == "GET /confirm/…"

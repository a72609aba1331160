"""One WebSub publish ping: ``hub.mode=publish&hub.url=TOPIC`` POSTed to a hub."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlencode

from publisher import __version__

__all__ = ["DEFAULT_TIMEOUT", "ping"]

DEFAULT_TIMEOUT = 5.0


def ping(hub: str, topic: str, *, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Tell ``hub`` that ``topic`` changed. None if it answered 2xx, else a one-line reason."""
    body = urlencode({"hub.mode": "publish", "hub.url": topic}).encode("ascii")
    request = urllib.request.Request(
        hub,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": f"publisher/{__version__}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
            response.read(65536)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}".strip()
    except urllib.error.URLError as exc:
        return _one_line(str(exc.reason))
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed answer
        return _one_line(str(exc) or type(exc).__name__)
    if 200 <= status < 300:
        return None
    return f"HTTP {status}"


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"

"""A headless Chromium driven over its DevTools protocol, for end-to-end browser tests.

Debian's ``chromium`` package and the small ``websocket-client`` library are
all it takes: nothing is downloaded (no driver manager, no browser build).
Chromium is started with a fresh, empty profile and with every background
service off, since this machine has no network and Chromium would otherwise
stall on lookups::

    with Browser.launch(tmp_path) as browser:
        page = browser.page()
        page.goto("http://127.0.0.1:8000/subscribe")
        page.type("#email", "a@example.com")
        page.click("button[type=submit]", navigates=True)
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import selectors
import shutil
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import websocket

__all__ = ["Browser", "Page", "chromium_path"]

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-proxy-server",
    "--remote-debugging-port=0",
)


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One tab, spoken to over its own DevTools websocket."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        self.timeout = timeout
        self._ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Log.enable")

    def close(self) -> None:
        self._ws.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str) -> dict[str, Any]:
        """The first kept or coming event named ``event`` (which is then forgotten)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for index, message in enumerate(self.events):
                if message["method"] == event:
                    del self.events[index]
                    return message
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {self.timeout}s")
            self.events.append(json.loads(self._ws.recv()))

    def _forget(self, event: str) -> None:
        self.events = [m for m in self.events if m["method"] != event]

    def goto(self, url: str) -> None:
        """Open ``url`` and wait until it has loaded."""
        self._forget("Page.loadEventFired")
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"{url}: {result['errorText']}")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _centre(self, selector: str) -> tuple[float, float]:
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if box is None:
            raise LookupError(f"nothing matches {selector!r}")
        return float(box[0]), float(box[1])

    def click(self, selector: str, *, navigates: bool = False) -> None:
        """Click the middle of the element with the mouse, as a person would."""
        x, y = self._centre(selector)
        self._forget("Page.loadEventFired")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        if navigates:
            self.wait_for("Page.loadEventFired")

    def type(self, selector: str, text: str) -> None:
        """Click into a field and type ``text`` (any script, Japanese included)."""
        self.click(selector)
        self.call("Input.insertText", text=text)

    def text(self, selector: str) -> str:
        value = self.evaluate(
            f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || ''"
        )
        return str(value).strip()

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        """Errors the page logged (a CSP refusal, a missing stylesheet, a script error)."""
        found = []
        for message in self.events:
            if message["method"] == "Log.entryAdded":
                entry = message["params"]["entry"]
                if entry.get("level") == "error":
                    found.append(f"{entry.get('text')} {entry.get('url', '')}".strip())
            elif message["method"] == "Runtime.exceptionThrown":
                found.append(str(message["params"]["exceptionDetails"].get("text")))
        return found


class Browser:
    """A headless Chromium process with an empty profile under ``folder``."""

    def __init__(self, process: subprocess.Popen[str], endpoint: str, timeout: float) -> None:
        self.process = process
        self.endpoint = endpoint  # http://127.0.0.1:<port>
        self.timeout = timeout
        self.log: list[str] = []
        self._pages: list[Page] = []
        self._drain = threading.Thread(target=self._read_log, daemon=True)
        self._drain.start()

    @classmethod
    def launch(cls, folder: Path, *, timeout: float = 30.0) -> Browser:
        binary = chromium_path()
        if binary is None:
            raise FileNotFoundError("chromium is not installed")
        profile = folder / "chromium-profile"
        profile.mkdir(parents=True)
        process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(process.stderr, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not selector.select(deadline - time.monotonic()):
                    break
                line = process.stderr.readline()
                if not line:
                    break
                seen.append(line)
                match = re.search(r"DevTools listening on ws://([\d.]+:\d+)/", line)
                if match:
                    return cls(process, f"http://{match.group(1)}", timeout)
        process.kill()
        process.wait()
        process.stderr.close()
        raise RuntimeError("chromium did not start:\n" + "".join(seen))

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def page(self) -> Page:
        """The first tab."""
        with httpx.Client(timeout=self.timeout) as http:
            targets = http.get(f"{self.endpoint}/json/list").json()
        [target] = [t for t in targets if t["type"] == "page"][:1]
        page = Page(target["webSocketDebuggerUrl"], self.timeout)
        self._pages.append(page)
        return page

    def close(self) -> None:
        for page in self._pages:
            page.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._drain.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

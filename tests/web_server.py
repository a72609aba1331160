"""``publisher serve`` in a subprocess, for tests that talk to it over HTTP.

The server is started with ``--port 0`` and announces the port it took on its
first line of output, so tests never race each other for a port::

    with ServeProcess(site.root, env={"PUBLISHER_SECRET": "..."}) as server:
        httpx.get(server.url + "/subscribe")
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

__all__ = ["ServeProcess", "wait_for_files"]


class ServeProcess:
    """The real ``python -m publisher serve`` on 127.0.0.1 and a free port."""

    def __init__(
        self,
        cwd: Path,
        *,
        env: dict[str, str] | None = None,
        now: str | None = None,
        startup_timeout: float = 30.0,
        args: tuple[str, ...] = (),
    ) -> None:
        self.cwd = cwd
        self.args = args  # more options for serve, such as --watch
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self.now = now
        self.startup_timeout = startup_timeout
        self.url = ""
        self.output: list[str] = []  # what it printed after its first line (access log)
        self._process: subprocess.Popen[str] | None = None
        self._drain: threading.Thread | None = None
        self._stderr_path = cwd / "serve-stderr.log"

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text("utf-8") if self._stderr_path.exists() else ""

    def start(self) -> ServeProcess:
        args = [sys.executable, "-m", "publisher"]
        if self.now:
            args += ["--now", self.now]
        args += ["serve", "--host", "127.0.0.1", "--port", "0", *self.args]
        with self._stderr_path.open("w", encoding="utf-8") as err:
            self._process = subprocess.Popen(
                args,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                encoding="utf-8",
            )
        first = self._first_line()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+)/", first)
        if not match:
            self.stop()
            raise AssertionError(f"publisher serve did not start: {first!r}\n{self.stderr}")
        self.url = match.group(1)
        # Keep reading its output, so a full pipe never blocks the server.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()
        return self

    def _first_line(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(self.startup_timeout):
                return ""
        return self._process.stdout.readline()

    def _read_rest(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.output.append(line)

    def stop(self) -> int | None:
        """Stop it as systemd would (SIGTERM) and return its exit code."""
        process = self._process
        if process is None:
            return None
        self._process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._drain is not None:
            self._drain.join(5)
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_files(folder: Path, pattern: str, count: int, timeout: float = 15.0) -> list[Path]:
    """Wait until ``folder`` holds ``count`` files matching ``pattern`` (written by the server)."""
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)

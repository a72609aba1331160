"""`publisher run` as a real process on a temporary site: saves, a second instance, signals.

Every wait here is for an event (a line in the log, a change in a feed file)
with a deadline, never a sleep followed by an assertion.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import feedparser
import pytest

from publisher.store import Store
from tests.conftest import REPO, Site, run_publisher


class Running:
    """One `publisher run` process, its log in a file (a pipe could fill and block it)."""

    def __init__(self, site: Site, *args: str, env: dict[str, str] | None = None) -> None:
        self.site = site
        self.log_path = site.root.parent / f"run-{time.monotonic_ns()}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "publisher", "run", *args],
            cwd=site.root,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def wait_for_log(self, pattern: str, deadline: float = 20.0) -> re.Match[str]:
        end = time.monotonic() + deadline
        while True:
            exited = self.process.poll() is not None
            found = re.search(pattern, self.log, re.MULTILINE)
            if found:
                return found
            assert not exited, f"exited {self.process.returncode} before {pattern!r}:\n{self.log}"
            assert time.monotonic() < end, f"no {pattern!r} within {deadline}s:\n{self.log}"
            time.sleep(0.02)

    def started(self) -> Running:
        self.wait_for_log(r"publisher run started")
        return self

    def stop(self, signum: int = signal.SIGTERM, deadline: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=deadline)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def launch() -> Iterator[list[Running]]:
    launched: list[Running] = []
    yield launched
    for running in launched:
        running.close()


def start(
    launched: list[Running], site: Site, *args: str, env: dict[str, str] | None = None
) -> Running:
    running = Running(site, *args, env=env)
    launched.append(running)
    return running.started()


def wait_for_feed(running: Running, check: Callable[[list[str]], bool], deadline: float) -> float:
    """Poll the Atom feed until ``check(titles)`` holds; returns how long it took."""
    site = running.site
    began = time.monotonic()
    feed = site.output / "atom.xml"
    while True:
        try:
            titles = [e.title for e in feedparser.parse(feed.read_bytes()).entries]
        except OSError:
            titles = []
        if check(titles):
            return time.monotonic() - began
        assert time.monotonic() - began < deadline, (
            f"feed not updated in {deadline}s: {titles}; the log says:\n{running.log}"
        )
        time.sleep(0.02)


def vim_save(path: Path, text: str) -> None:
    """Save ``text`` to ``path`` the way vim does by default: probe, swap, temp, rename."""
    folder = path.parent
    (folder / "4913").write_text("")
    (folder / "4913").unlink()
    swap = folder / f".{path.name}.swp"
    swap.write_bytes(b"\0" * 1024)
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(text, "utf-8")
    os.rename(tmp, path)
    swap.unlink()


def post_text(title: str, date: str, body: str = "Body.\n") -> str:
    return f"---\ntitle: {title}\ndate: {date}\n---\n{body}"


def test_a_vim_save_reaches_the_feed_quickly_and_a_broken_post_keeps_its_last_version(
    site: Site, launch: list[Running]
) -> None:
    post = site.post("2026-01-01-hello.md", "title: Hello\ndate: 2026-01-01 09:00")
    running = start(launch, site, "--no-digest")
    wait_for_feed(running, lambda titles: titles == ["Hello"], deadline=10)

    vim_save(post, post_text("Hello, edited", "2026-01-01 09:00"))
    took = wait_for_feed(running, lambda titles: titles == ["Hello, edited"], deadline=2)
    print(f"save to new feed: {took:.3f}s")

    vim_save(post, post_text("[Hello", "2026-01-01 09:00"))
    running.wait_for_log(
        r"^\S+ warning: posts/2026-01-01-hello\.md:\d+:\d+: front matter: .*"
        r" \(kept its last good version\)$"
    )
    assert [e.title for e in feedparser.parse(site.output / "atom.xml").entries] == [
        "Hello, edited"
    ]
    # One log line per build, saying what, how long and how it went.
    builds = re.findall(r"^\S+ build (\w+) in \d+\.\d\ds: .*\((.*)\)$", running.log, re.MULTILINE)
    assert builds == [
        ("ok", "start"),
        ("ok", "posts/2026-01-01-hello.md changed"),
        ("ok", "posts/2026-01-01-hello.md changed"),
    ]
    assert running.stop() == 0


def test_a_second_instance_is_refused_with_the_first_ones_pid(
    site: Site, launch: list[Running]
) -> None:
    first = start(launch, site, "--no-digest")
    second = run_publisher("run", "--no-digest", cwd=site.root, timeout=30)
    assert second.returncode == 2
    assert second.stderr == f"publisher: already running (pid {first.process.pid})\n"
    assert first.process.poll() is None
    assert first.stop() == 0


def test_sigterm_stops_cleanly_and_frees_the_lock_for_the_next_start(
    site: Site, launch: list[Running]
) -> None:
    site.post("2026-01-01-hello.md", "title: Hello\ndate: 2026-01-01 09:00")
    first = start(launch, site, "--no-digest", "--json-logs")
    assert first.stop(signal.SIGTERM) == 0
    records = [json.loads(line) for line in first.log.splitlines()]
    assert [r["message"] for r in records[-2:]] == [
        "SIGTERM received: stopping",
        "publisher run stopped",
    ]
    build = next(r for r in records if r.get("job") == "build")
    assert build["result"] == "ok" and build["published"] == 1 and build["seconds"] >= 0

    shown = run_publisher("status", cwd=site.root)
    assert shown.stdout.splitlines()[0] == "publisher run: not running"
    assert "by publisher run, ok, 1 posts published" in shown.stdout

    second = start(launch, site, "--no-digest")
    assert second.stop(signal.SIGINT) == 0
    assert "SIGINT received: stopping" in second.log


def test_a_future_post_appears_at_its_time_in_the_running_process(
    site: Site, launch: list[Running]
) -> None:
    site.post("2026-01-01-hello.md", "title: Hello\ndate: 2026-01-01 09:00")
    when = (datetime.now(site.config().site.timezone) + timedelta(seconds=3)).replace(microsecond=0)
    site.post("later.md", f"title: Later\ndate: {when.isoformat()}")
    running = start(launch, site, "--no-digest")
    assert [e.title for e in feedparser.parse(site.output / "atom.xml").entries] == ["Hello"]
    assert f"next scheduled post {when.isoformat()}" in running.log
    wait_for_feed(running, lambda titles: titles == ["Later", "Hello"], deadline=20)
    assert datetime.now(when.tzinfo) >= when  # not published early
    running.wait_for_log(r"^\S+ publish ok in .* \(due: posts/later\.md\)$")
    assert running.stop() == 0


def test_config_edits_are_picked_up_and_a_bad_config_is_kept_out(
    site: Site, launch: list[Running]
) -> None:
    site.post("2026-01-01-hello.md", "title: Hello\ndate: 2026-01-01 09:00")
    running = start(launch, site, "--no-digest")
    feed = site.output / "atom.xml"

    def feed_title() -> str:
        return str(feedparser.parse(feed.read_bytes()).feed.title)

    assert feed_title() == "Test Site"
    site.settings["site"]["title"] = "Renamed Site"
    site.write_config()
    wait_for_feed(running, lambda _titles: feed_title() == "Renamed Site", deadline=10)

    site.write_config(feeds={"max_items": "ten"})
    running.wait_for_log(r"^\S+ error: config rejected in .*: kept the previous config$")
    running.wait_for_log(r"^\S+ error: .*config\.yaml: feeds\.max_items: must be a positive")
    assert running.process.poll() is None
    assert running.stop() == 0


def test_a_missed_digest_is_sent_at_start_and_not_again_after_a_restart(
    site: Site, launch: list[Running]
) -> None:
    tz = site.config().site.timezone
    fired = datetime.now(tz) - timedelta(hours=1)
    # A daily schedule that last fired an hour ago, while nothing was running.
    site.write_config(
        digest={"schedule": f"{fired.minute} {fired.hour} * * *", "from": "news@example.com"}
    )
    with Store.open(site.config()) as store:
        store.add_subscriber("reader@example.org", now=fired - timedelta(days=2))
    site.post("news.md", f"title: News\ndate: {(fired - timedelta(days=1)).isoformat()}")
    env = {"PUBLISHER_SECRET": "process test secret"}

    first = start(launch, site, env=env)
    first.wait_for_log(r"^\S+ digest sent in .*: 1 sent, 0 skipped, .*\(catch-up\)$")
    assert first.stop() == 0
    outbox = site.root / "outbox"
    assert len(list(outbox.glob("*.eml"))) == 1

    second = start(launch, site, env=env)
    second.wait_for_log(r"^\S+ digest nothing in .* already done \(catch-up\)$")
    assert second.stop() == 0
    assert len(list(outbox.glob("*.eml"))) == 1


def test_server_in_run_serves_the_subscribe_pages_from_the_same_process(
    site: Site, launch: list[Running]
) -> None:
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site.write_config(
        server={"in_run": True, "port": port},
        digest={"from": "Test Site <news@example.com>"},
    )
    site.post("2026-01-01-hello.md", "title: Hello\ndate: 2026-01-01 09:00\ncategories: [News]")
    running = start(launch, site, "--no-digest", env={"PUBLISHER_SECRET": "in-run secret"})
    running.wait_for_log(rf"serving http://127\.0\.0\.1:{port}")
    page = httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=10)
    assert page.status_code == 200
    assert 'name="email"' in page.text and "News" in page.text
    feed = httpx.get(f"http://127.0.0.1:{port}/atom.xml", timeout=10)
    assert feed.headers["content-type"].startswith("application/atom+xml")
    assert running.stop() == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/subscribe", timeout=2)

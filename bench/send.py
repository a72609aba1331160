"""How fast digests are rendered and sent through the SMTP backend.

Usage::

    python bench/send.py [--subscribers 10000] [--baseline 1000] [--posts 20]
                         [--renderer auto|real|synthetic]

Setup: N subscribers, each following three of six categories, and a digest of
20 posts. Each subscriber's message holds the posts of their categories.

Phases, each timed on its own, wall clock and the client's CPU time:

1. render only: build every message, send nothing (target: >= 2,000 msg/s);
2. render + serialise: also turn it into the bytes SMTP carries (``--baseline``);
3. render + send through ``SmtpBackend``, one connection for the whole run,
   rate limit off (target: >= 500 msg/s);
4. render + send the first ``--baseline`` messages, each over a new
   ``smtplib.SMTP`` connection (connect, EHLO, send, QUIT), as naive code
   would; the ratio of 3 to 4 is what keeping the connection buys;
5. server alone: one message's bytes sent ``--baseline`` times over one
   connection: the ceiling the server sets for any client.

The receiving aiosmtpd server runs in a separate process (multiprocessing):
in the same process it would compete with the client for the GIL and the
figures would describe the sum of both. SMTP is a conversation, so the time
per message is the client's time plus the server's (phase 5); the client's
own cost is the CPU time printed on each line.

``--renderer``:

* ``synthetic`` builds ``EmailMessage`` objects of realistic size (about
  30 KB of HTML plus a text part) directly;
* ``real`` (the default when ``publisher.digest.render`` is importable) uses
  the digest renderer and message builder: a temporary site with the posts,
  ``DigestRenderer.render`` and ``build_message`` per subscriber.

Exit status 0 even when a target is missed: this is a report.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import smtplib
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from publisher.backends import SmtpBackend  # noqa: E402
from publisher.backends.base import envelope, wire_bytes  # noqa: E402
from publisher.config import SmtpConfig  # noqa: E402

CATEGORIES = ("tech", "life", "travel", "food", "books", "music")
TARGET_RENDER = 2000.0
TARGET_SEND = 500.0
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


# --- the server, in its own process -------------------------------------------------------


def _serve(conn: Connection) -> None:
    """Run aiosmtpd on 127.0.0.1 until told to stop; answer "count" with messages seen."""
    import logging

    from aiosmtpd.controller import Controller

    logging.getLogger("mail.log").setLevel(logging.WARNING)

    class Counter:
        def __init__(self) -> None:
            self.count = 0
            self.bytes = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.count += 1
            self.bytes += len(envelope.original_content or b"")
            return "250 OK"

    handler = Counter()
    controller = Controller(handler, hostname="127.0.0.1", port=conn.recv(), ready_timeout=10)
    controller.start()
    conn.send("ready")
    try:
        while True:
            command = conn.recv()
            if command == "count":
                conn.send((handler.count, handler.bytes))
            else:
                break
    finally:
        controller.stop()


class ServerProcess:
    """aiosmtpd in a child process; ``count()`` asks it how many messages arrived."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(child,), daemon=True)

    def __enter__(self) -> ServerProcess:
        self._process.start()
        self._conn.send(self.port)
        if self._conn.recv() != "ready":
            raise RuntimeError("server did not start")
        return self

    def count(self) -> tuple[int, int]:
        self._conn.send("count")
        result: tuple[int, int] = self._conn.recv()
        return result

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)
        self._conn.close()


# --- subscribers and messages -------------------------------------------------------------


def subscribers(n: int) -> Iterator[tuple[int, str, str, tuple[str, ...]]]:
    """(id, email, name, three categories), deterministic."""
    for i in range(n):
        cats = tuple(CATEGORIES[(i + k * (1 + i % 2)) % len(CATEGORIES)] for k in range(3))
        yield i + 1, f"reader{i:05d}@example.com", f"Reader {i}", tuple(dict.fromkeys(cats))


Renderer = Callable[[int, str, str, tuple[str, ...]], EmailMessage]


def synthetic_renderer(posts: int) -> Renderer:
    """Messages of realistic size built directly: ~2.8 KB of HTML per post, ~30 KB each."""
    paragraph = (
        "ニュースレターの本文です。This paragraph stands for the excerpt of a post,"
        " with enough words to look like one. "
    ) * 6
    blocks = []
    for p in range(posts):
        category = CATEGORIES[p % len(CATEGORIES)]
        html = (
            f'<tr><td style="padding:16px;font-family:sans-serif">'
            f'<h2 style="font-size:20px;margin:0 0 8px"><a href="https://example.com/{category}/'
            f'2026/11/{p:02d}/post-{p}.html" style="color:#1a0dab">Post {p}: 記事のタイトル'
            f'</a></h2><p style="color:#555;font-size:13px">2026年11月{p + 1}日 · {category}</p>'
            f'<p style="font-size:15px;line-height:1.6">{paragraph}</p>'
            f'<p style="font-size:15px;line-height:1.6">{paragraph}</p></td></tr>\n'
        )
        text = f"Post {p}: 記事のタイトル\nhttps://example.com/{category}/post-{p}.html\n\n"
        blocks.append((category, html, text + textwrap.fill(paragraph, 72) + "\n\n"))

    def render(sid: int, email: str, name: str, cats: tuple[str, ...]) -> EmailMessage:
        chosen = [b for b in blocks if b[0] in cats]
        unsubscribe = f"https://example.com/unsubscribe/v1.{sid}.{'x' * 43}"
        html = (
            '<!doctype html><html><body style="margin:0;background:#f4f4f4">'
            f'<table width="100%" style="max-width:640px;margin:auto;background:#fff">'
            f"<tr><td><p>こんにちは、{name}さん</p></td></tr>"
            + "".join(b[1] for b in chosen)
            + f'<tr><td><a href="{unsubscribe}">配信停止</a></td></tr></table></body></html>'
        )
        text = f"こんにちは、{name}さん\n\n" + "".join(b[2] for b in chosen) + unsubscribe + "\n"
        message = EmailMessage()
        message["From"] = "Bench Site <news@example.com>"
        message["To"] = f"{name} <{email}>"
        message["Subject"] = f"Bench Site: {len(chosen)} new posts"
        message["Message-ID"] = f"<2026-W49.{sid}@example.com>"
        message["List-Unsubscribe"] = f"<{unsubscribe}>"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message

    return render


def real_renderer(posts: int, workdir: Path) -> Renderer:
    """The digest engineer's renderer and message builder on a temporary site."""
    from publisher.build import load_site
    from publisher.config import load_config
    from publisher.digest.message import build_message, make_message_id
    from publisher.digest.period import Period
    from publisher.digest.render import DigestRenderer, post_views, recipient_for
    from publisher.digest.select import group_posts

    site = workdir / "site"
    (site / "posts").mkdir(parents=True)
    (site / "config.yaml").write_text(
        "site:\n  title: Bench Site\n  url: https://example.com\n  language: ja\n"
        "  timezone: Asia/Tokyo\n  email: news@example.com\n",
        "utf-8",
    )
    paragraph = (
        "ニュースレターの本文です。This paragraph stands for the body of a post,"
        " with enough words to look like one.\n\n"
    ) * 8
    for p in range(posts):
        date = NOW - timedelta(hours=6 * (p + 1))
        (site / "posts" / f"{date:%Y-%m-%d}-post-{p}.md").write_text(
            f'---\ntitle: "Post {p}: 記事のタイトル"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n'
            f"categories: [{CATEGORIES[p % len(CATEGORIES)]}]\n---\n{paragraph}",
            "utf-8",
        )
    config = load_config(site / "config.yaml")
    postset, *_ = load_site(config, NOW)
    published = list(postset.published)
    views = post_views(config, published)
    period = Period("2026-W49", NOW)
    renderer = DigestRenderer(config, period, views, web_url="https://example.com/digests/x")
    secret = b"bench-secret-bench-secret-bench!"

    def render(sid: int, email: str, name: str, cats: tuple[str, ...]) -> EmailMessage:
        chosen = [p for p in published if set(p.categories) & set(cats)]
        selection = group_posts(chosen, cats)
        recipient = recipient_for(config, sid, email, name, secret)
        rendered = renderer.render(selection, recipient)
        return build_message(
            config,
            recipient=recipient,
            rendered=rendered,
            message_id=make_message_id(config, period.key, sid),
            now=NOW,
        )

    return render


# --- phases -------------------------------------------------------------------------------


def timed(label: str, count: int, work: Callable[[], None]) -> tuple[float, float]:
    """Run ``work``; print and return (messages per wall second, per client CPU second)."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"  {label:<50} {count:>6} msgs {wall:6.2f} s {count / wall:7.0f} msg/s"
        f"   (client CPU {1000 * cpu / count:5.2f} ms/msg)",
        flush=True,
    )
    return count / wall, count / cpu


def pick_renderer(name: str, posts: int, workdir: Path) -> tuple[str, Renderer]:
    # SWITCH: "real" is the digest engineer's renderer (publisher/digest/render.py and
    # message.py); "synthetic" stands in for it. "auto" takes the real one when it
    # imports and works on a sample, and says so when it falls back.
    if name in ("real", "auto"):
        try:
            render = real_renderer(posts, workdir)
            render(*next(subscribers(1)))
            return "real (publisher.digest)", render
        except Exception as exc:
            if name == "real":
                raise
            print(f"real renderer unusable ({type(exc).__name__}: {exc}); using synthetic")
    return "synthetic EmailMessage", synthetic_renderer(posts)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument(
        "--baseline", type=int, default=1_000, help="messages for the comparison phases"
    )
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--renderer", choices=["synthetic", "real", "auto"], default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        renderer_name, render = pick_renderer(args.renderer, args.posts, Path(tmp))
        people = list(subscribers(args.subscribers))
        baseline = people[: args.baseline]
        sample = render(*people[0])
        sample_bytes = wire_bytes(sample)
        lines = sample_bytes.count(b"\n")
        print(
            f"{len(people)} subscribers (3 of {len(CATEGORIES)} categories each),"
            f" {args.posts} posts; renderer: {renderer_name};"
            f" a message: {len(sample_bytes) / 1024:.1f} KB, {lines} lines"
        )
        print(
            "server: aiosmtpd in a separate process (multiprocessing), so that it does not"
            " compete with the client for the GIL"
        )

        def render_all() -> None:
            for person in people:
                render(*person)

        with ServerProcess() as server:
            backend = SmtpBackend(
                SmtpConfig(host="127.0.0.1", port=server.port, security="none"), environ={}
            )

            def send_reused() -> None:
                with backend:
                    for person in people:
                        backend.send(render(*person))

            def send_fresh() -> None:
                for person in baseline:
                    message = render(*person)
                    sender, recipients = envelope(message)
                    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
                        smtp.sendmail(sender, recipients, wire_bytes(message))

            def server_ceiling() -> None:
                with smtplib.SMTP("127.0.0.1", server.port) as smtp:
                    for _ in baseline:
                        smtp.sendmail("news@example.com", ["reader@example.com"], sample_bytes)

            rendered, _ = timed("render only", len(people), render_all)

            def serialise() -> None:
                for person in baseline:
                    wire_bytes(render(*person))

            timed("render + serialise (wire_bytes)", len(baseline), serialise)
            reused, reused_cpu = timed(
                "render + send, one connection (SmtpBackend)", len(people), send_reused
            )
            fresh, _ = timed(
                "render + send, new smtplib connection each", len(baseline), send_fresh
            )
            timed("server alone: same bytes, one connection", len(baseline), server_ceiling)
            received, volume = server.count()

    expected = len(people) + 2 * len(baseline)
    print(
        f"server received {received} of {expected} messages ({volume / 1e6:.0f} MB);"
        f" connections opened by SmtpBackend: {backend.connections}"
    )
    print(f"one connection vs a new connection per message: {reused / fresh:.1f}x faster")
    print(
        f"client-bound rate of SmtpBackend (messages per client CPU second): {reused_cpu:.0f}"
        " msg/s; when it is above the wall-clock rate, the server is the limit"
    )
    for label, rate, target in (
        ("render only", rendered, TARGET_RENDER),
        ("render + send", reused, TARGET_SEND),
    ):
        verdict = "ok" if rate >= target else "MISSED"
        print(f"target {label} >= {target:.0f} msg/s: {verdict} ({rate:.0f})")


if __name__ == "__main__":
    main()

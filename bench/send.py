"""How fast a digest goes out: the real ``send_digest`` path, end to end.

Usage::

    python bench/send.py [--subscribers 10000] [--categories 6] [--posts 20]
                         [--baseline 2000] [--connections N]

Setup: a temporary site with ``--posts`` posts spread over ``--categories``
categories, a real store (a SQLite file in the temporary folder, as
``store.url`` would name it) with ``--subscribers`` active subscribers who
follow three categories each (popular categories more often, as readers do),
and aiosmtpd on 127.0.0.1 in a separate process, so that client and server do
not compete for one GIL. The SMTP backend is configured as a site would
(``smtp.connections``), with the rate limit off.

Phases, in one run, each timed on its own (wall clock, and the CPU time per
message of the client and of the server process):

1. rendered alone: ``send_digest(dry_run=True)``, which plans every message and
   builds its full bytes, and records and sends nothing
   (target: >= 2,000 msg/s);
2. rendered and sent: ``send_digest`` for real: ledger (two durable commits
   per message), rendering, and the SMTP backend (target: >= 500 msg/s);
3. the first ``--baseline`` of the same messages, rendered the same way and
   each sent over a fresh ``smtplib.SMTP`` connection (connect, EHLO, send,
   QUIT), as naive code would, without the ledger;
4. server alone: one message's bytes sent ``--baseline`` times over one
   connection: the ceiling the server sets for any client.

Then the ratios and PASS/MISS against the targets. Exit status 0 even when a
target is missed: this is a report. ``--subscribers 1000`` runs in seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import smtplib
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from publisher.build.pipeline import load_site  # noqa: E402
from publisher.config import Config, load_config  # noqa: E402
from publisher.digest.message import MessageBuilder  # noqa: E402
from publisher.digest.period import Period, period_at  # noqa: E402
from publisher.digest.plan import plan_selections  # noqa: E402
from publisher.digest.render import DigestRenderer, recipient_for  # noqa: E402
from publisher.digest.report import SendReport  # noqa: E402
from publisher.digest.send import send_digest  # noqa: E402
from publisher.digest.views import post_views  # noqa: E402
from publisher.digest.webcopy import web_copy_url  # noqa: E402
from publisher.mail import SmtpBackend, make_backend  # noqa: E402
from publisher.mail.headers import make_message_id  # noqa: E402
from publisher.store import Store  # noqa: E402

TARGET_RENDER = 2000.0
TARGET_SEND = 500.0
DUE = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # Monday 08:00 in Tokyo: the default schedule
NOW = DUE + timedelta(minutes=5)
JOINED = NOW - timedelta(days=30)
SECRET = b"bench-secret-bench-secret-bench!"
T = TypeVar("T")


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

    def cpu(self) -> float:
        """CPU seconds the server process has used so far (Linux; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def count(self) -> tuple[int, int]:
        self._conn.send("count")
        result: tuple[int, int] = self._conn.recv()
        return result

    def __exit__(self, *exc: object) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)
        self._conn.close()


# --- the site and its readers -------------------------------------------------------------


def make_site(folder: Path, posts: int, categories: list[str], port: int, connections: int) -> Path:
    """A site with ``posts`` Japanese/English posts, one category each, published last week."""
    site = folder / "site"
    (site / "posts").mkdir(parents=True)
    smtp = f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: none\n"
    if connections:
        smtp += f"  connections: {connections}\n"
    (site / "config.yaml").write_text(
        "site:\n  title: Bench Site\n  url: https://example.com\n  language: ja\n"
        "  timezone: Asia/Tokyo\n  email: news@example.com\n"
        "digest:\n  backend: smtp\n"
        f"store:\n  url: sqlite:///{folder / 'state' / 'publisher.db'}\n" + smtp,
        "utf-8",
    )
    paragraph = (
        "ニュースレターの本文です。This paragraph stands for the body of a post,"
        " with enough words to look like one.\n\n"
    ) * 8
    for p in range(posts):
        date = DUE - timedelta(hours=6 * p + 1)
        (site / "posts" / f"{date:%Y-%m-%d}-post-{p}.md").write_text(
            f'---\ntitle: "Post {p}: 記事のタイトル"\ndate: {date:%Y-%m-%d %H:%M:%S %z}\n'
            f"categories: [{categories[p % len(categories)]}]\n---\n{paragraph}",
            "utf-8",
        )
    return site / "config.yaml"


def add_readers(store: Store, count: int, categories: list[str]) -> None:
    """``count`` readers following three categories each, the first categories more often."""
    rng = random.Random(20261130)
    weights = [1 / (rank + 1) for rank in range(len(categories))]
    for i in range(count):
        chosen: set[str] = set()
        while len(chosen) < min(3, len(categories)):
            chosen.add(rng.choices(categories, weights)[0])
        store.add_subscriber(
            f"reader{i:05d}@example.com",
            name=f"Reader {i}",
            categories=sorted(chosen),
            now=JOINED,
        )


# --- phases -------------------------------------------------------------------------------


def timed(
    label: str, work: Callable[[], tuple[int, T]], server: ServerProcess | None = None
) -> tuple[float, T]:
    """Run ``work``, which returns (messages, result); print and return msg/s and the result.

    Also prints the CPU time per message of this process and of the server.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    server_cpu = server.cpu() if server is not None else 0.0
    count, result = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per = 1000 / max(count, 1)
    line = f"  {label:<50} {count:>6} msgs {wall:6.2f} s {count / wall:6.0f} msg/s   CPU ms/msg:"
    line += f" client {cpu * per:4.2f}"
    if server is not None:
        line += f", server {(server.cpu() - server_cpu) * per:4.2f}"
    print(line, flush=True)
    return count / wall, result


def same_messages(config: Config, store: Store, count: int) -> Callable[[], list[Any]]:
    """Builds the first ``count`` messages the send path builds, the same way (no ledger)."""
    period = period_at(config, NOW)
    assert period is not None
    published = load_site(config, NOW)[0].published
    readers = store.list_subscribers("active")[:count]
    chosen, _ = plan_selections(config, period, published, readers, lambda _id: set())
    shown = {post.id: post for selection in chosen.values() for post in selection.posts}

    def build() -> list[Any]:
        renderer = DigestRenderer(
            config,
            Period(period.key, period.due),
            post_views(config, shown.values()),
            web_url=web_copy_url(config, period.key),
        )
        builder = MessageBuilder(config)
        out = []
        for reader in readers:
            if reader.id not in chosen:
                continue
            recipient = recipient_for(config, reader.id, reader.email, reader.name, SECRET)
            out.append(
                builder.prepare(
                    recipient=recipient,
                    content=renderer.prepare(chosen[reader.id], recipient),
                    message_id=make_message_id(config, period.key, reader.id),
                    now=NOW,
                )
            )
        return out

    return build


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--categories", type=int, default=6)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--baseline", type=int, default=2_000, help="messages for phases 3 and 4")
    parser.add_argument(
        "--connections", type=int, default=0, help="smtp.connections (default: the config's)"
    )
    parser.add_argument(
        "--senders",
        default="",
        help="e.g. 1,2,4: that many sender processes sharing each period, on --store",
    )
    parser.add_argument("--store", default="", help="PostgreSQL URL (with --senders)")
    parser.add_argument(
        "--round-trip-sample",
        type=int,
        default=2_000,
        help="messages sent through the round-trip counter (with --senders; 0: skip)",
    )
    args = parser.parse_args()
    categories = [f"cat{c:02d}" for c in range(args.categories)]
    if args.senders:
        if not args.store.startswith("postgresql"):
            parser.error("--senders needs --store postgresql+psycopg://...")
        from send_shared import run_shared

        run_shared(
            args.store,
            [int(n) for n in args.senders.split(",")],
            args.subscribers,
            args.posts,
            categories,
            args.connections,
            args.round_trip_sample,
        )
        return
    os.environ.setdefault("PUBLISHER_SECRET", SECRET.decode())

    with tempfile.TemporaryDirectory() as tmp, ServerProcess() as server:
        folder = Path(tmp)
        config = load_config(
            make_site(folder, args.posts, categories, server.port, args.connections)
        )
        started = time.perf_counter()
        with Store.open(config) as store:
            add_readers(store, args.subscribers, categories)
        print(
            f"{args.subscribers} subscribers (3 of {len(categories)} categories each),"
            f" {args.posts} posts; store: SQLite file, synchronous=FULL;"
            f" smtp.connections: {config.smtp.connections}"
            f" (setup {time.perf_counter() - started:.0f} s)"
        )
        print("server: aiosmtpd on 127.0.0.1 in a separate process (its own GIL)")

        with Store.open(config) as store:
            # 1. rendered alone: the real path with nothing recorded or sent.
            dry_backend = make_backend(config)

            def dry() -> tuple[int, SendReport]:
                report = send_digest(config, store, dry_backend, now=NOW, dry_run=True)
                return report.sent, report

            rendered, dry_report = timed("rendered alone (send_digest dry run, bytes)", dry)
            sample = same_messages(config, store, 1)()[0].data()
            lines = sample.count(b"\n")
            print(
                f"    {dry_report.sent} messages built, {dry_report.skipped} readers with"
                f" nothing new; a message: {len(sample) / 1024:.1f} KB, {lines} lines, 8bit"
            )

            # 2. rendered and sent: the real path.
            def send() -> tuple[int, tuple[SendReport, int]]:
                with make_backend(config) as backend:
                    report = send_digest(config, store, backend, now=NOW)
                assert isinstance(backend, SmtpBackend)
                return report.sent, (report, backend.connections)

            sent, (report, opened) = timed(
                "rendered and sent (send_digest: ledger + SMTP)", send, server
            )
            ledger = store.ledger(report.period, "sent")
            print(
                f"    {report.summary()}; ledger rows sent: {len(ledger)};"
                f" connections opened: {opened}"
            )

            # 3. the same messages, a fresh smtplib connection for each.
            build = same_messages(config, store, args.baseline)

            def fresh() -> tuple[int, None]:
                messages = build()
                for message in messages:
                    with smtplib.SMTP("127.0.0.1", server.port) as smtp:
                        smtp.sendmail(
                            message.sender,
                            list(message.recipients),
                            message.data(),
                            mail_options=["BODY=8BITMIME"],
                        )
                return len(messages), None

            naive, _ = timed("rendered, sent over a new smtplib connection each", fresh, server)

            # 4. the server's ceiling.
            def ceiling() -> tuple[int, None]:
                with smtplib.SMTP("127.0.0.1", server.port) as smtp:
                    for _ in range(args.baseline):
                        smtp.sendmail(
                            "news@example.com",
                            ["reader@example.com"],
                            sample,
                            mail_options=["BODY=8BITMIME"],
                        )
                return args.baseline, None

            alone, _ = timed("server alone: same bytes, one connection", ceiling, server)
        received, volume = server.count()

    expected = report.sent + min(args.baseline, report.sent) + args.baseline
    print(f"server received {received} of {expected} messages ({volume / 1e6:.0f} MB)")
    print(
        f"ratios: rendered and sent / new connection each = {sent / naive:.1f}x;"
        f" rendered alone / rendered and sent = {rendered / sent:.1f}x;"
        f" rendered and sent / server alone = {sent / alone:.2f}"
    )
    for label, rate, target in (
        ("rendered alone", rendered, TARGET_RENDER),
        ("rendered and sent", sent, TARGET_SEND),
    ):
        verdict = "PASS" if rate >= target else "MISS"
        print(f"{verdict}: {label} {rate:.0f} msg/s (target >= {target:.0f})")


if __name__ == "__main__":
    main()

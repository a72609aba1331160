"""Several ``publisher digest send`` processes sharing one period on PostgreSQL.

Run through ``bench/send.py --senders 1,2,4 --store postgresql+psycopg://...``
(the URL ``bash .ci/postgres`` prints). For each number of senders, in one run:

* the send state is emptied (ledger, deliveries, runs, senders, the shared
  budget; the ``--subscribers`` readers stay), and the period is planned here,
  so what is timed is the sending, not the planning (``bench/plan.py`` times that);
* one aiosmtpd server per sender is started in a process of its own (each
  sender's config names its own server; the store and everything else are
  the same), and the senders are started together, each the real command in a
  subprocess, reaped with ``os.wait4`` by a tiny wrapper so that its CPU time
  and peak RSS are its own;
* reported: messages per second (from the first start to the last exit), CPU
  seconds per 1,000 messages of the senders, of the SMTP servers and of the
  PostgreSQL server processes, and each sender's peak memory.

Then one sender sends ``--round-trip-sample`` messages of a fresh period through
a counting TCP proxy in front of PostgreSQL: the database round trips per
message, read off the wire (one simple ``Query`` or one extended-protocol
``Sync`` from the client is one round trip), whatever the client library does.

Every message the servers received is counted and checked against the ledger:
the figures are for messages that went out exactly once.
"""

from __future__ import annotations

import asyncio
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from build import WRAPPER
from send import JOINED, NOW, SECRET, ServerProcess, make_site

from publisher.build.reader import SiteReader
from publisher.config import load_config
from publisher.digest.period import period_at
from publisher.digest.send import plan_period
from publisher.store import Store
from publisher.store.schema import metadata, subscribers_table

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET_TWO = 600.0  # msg/s with two senders
CHUNK = 10_000
#: The send state emptied before each round; subscribers and the schema stay.
SEND_STATE = ("deliveries", "send_ledger", "send_workers", "send_budget", "digest_runs")


@dataclass(frozen=True)
class Child:
    """What one sender process used."""

    wall: float
    rss_mb: float
    cpu: float
    code: int


def _postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL server process on this machine.

    A backend exits when its client disconnects; the postmaster reaps it, and its
    CPU time then counts in the postmaster's children's times (cutime, cstime).
    """
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name.startswith("postgres"):
            fields = rest.split()
            total += sum(int(f) for f in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def add_readers_bulk(url: str, count: int, categories: list[str]) -> None:
    """``count`` active readers following three categories each, inserted in bulk."""
    rng = random.Random(20261130)
    weights = [1 / (rank + 1) for rank in range(len(categories))]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = [t.name for t in reversed(metadata.sorted_tables) if t.name != "publisher_meta"]
        conn.exec_driver_sql("TRUNCATE " + ", ".join(tables) + " CASCADE")
        rows = []
        for i in range(count):
            chosen: set[str] = set()
            while len(chosen) < min(3, len(categories)):
                chosen.add(rng.choices(categories, weights)[0])
            email = f"reader{i:06d}@example.com"
            rows.append(
                {
                    "id": i + 1,
                    "email": email,
                    "email_key": email,
                    "name": f"Reader {i}",
                    "categories": sorted(chosen),
                    "status": "active",
                    "created_at": JOINED,
                    "updated_at": JOINED,
                    "confirmed_at": JOINED,
                }
            )
            if len(rows) == CHUNK:
                conn.execute(subscribers_table.insert(), rows)
                rows = []
        if rows:
            conn.execute(subscribers_table.insert(), rows)
        conn.exec_driver_sql(
            "SELECT setval(pg_get_serial_sequence('subscribers', 'id'), %s)", (count,)
        )
    engine.dispose()


def reset_sends(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE " + ", ".join(SEND_STATE))
    engine.dispose()


def plan(config_path: Path, now: datetime) -> int:
    """Plan the period of ``now`` here; how many rows are pending."""
    config = load_config(config_path)
    period = period_at(config, now)
    assert period is not None
    with Store.open(config) as store:
        posts, *_ = SiteReader(config, build_cache=False).read(now)
        active = {s.id: s for s in store.list_subscribers("active")}
        _run, rows, _planned, _nothing = plan_period(
            config, store, period, posts.published, active, now=now
        )
    return sum(1 for row in rows.values() if row.status == "pending")


def sender_config(base: Path, index: int, port: int, url: str) -> Path:
    """The base config with its own SMTP server and the given store URL."""
    text = base.read_text("utf-8")
    text = text.replace(f"port: {_port_of(text)}\n", f"port: {port}\n")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("url: sqlite")]
    path = base.with_name(f"config-{index}.yaml")
    path.write_text("\n".join(lines).replace("store:\n", f"store:\n  url: {url}\n") + "\n", "utf-8")
    return path


def _port_of(text: str) -> str:
    return text.split("port: ", 1)[1].split("\n", 1)[0]


def start_sender(config: Path, now: datetime, result: Path, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "publisher", "--config", str(config)]
    argv += ["--now", now.isoformat(), "digest", "send"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PUBLISHER_SECRET": SECRET.decode()}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-S", "-c", WRAPPER, str(result), *argv],
            cwd=config.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def read_child(result: Path) -> Child:
    wall, rss, code, cpu = result.read_text().split()[:4]
    return Child(float(wall), int(rss) / 1024, float(cpu), int(code))


def sent_rows(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        count = conn.exec_driver_sql(
            "SELECT count(*) FROM send_ledger WHERE status = 'sent'"
        ).scalar_one()
    engine.dispose()
    return int(count)


def one_round(
    folder: Path, base: Path, url: str, servers: list[ServerProcess], senders: int
) -> tuple[float, int, list[Child], float, float]:
    """Plan, then send with ``senders`` processes; (msg/s, messages, children, server
    CPU, PostgreSQL CPU)."""
    reset_sends(url)
    configs = [sender_config(base, i, servers[i].port, url) for i in range(senders)]
    pending = plan(configs[0], NOW)
    before = [server.count()[0] for server in servers[:senders]]
    server_cpu = sum(server.cpu() for server in servers[:senders])
    pg_cpu = _postgres_cpu()
    results = [folder / f"result-{senders}-{i}" for i in range(senders)]
    started = time.perf_counter()
    children = [
        start_sender(config, NOW, result, folder / f"log-{senders}-{i}.txt")
        for i, (config, result) in enumerate(zip(configs, results, strict=True))
    ]
    for child in children:
        child.wait()
    wall = time.perf_counter() - started
    server_cpu = sum(server.cpu() for server in servers[:senders]) - server_cpu
    pg_cpu = _postgres_cpu() - pg_cpu
    used = [read_child(result) for result in results]
    received = sum(s.count()[0] for s in servers[:senders]) - sum(before)
    sent = sent_rows(url)
    for i, child in enumerate(used):
        if child.code != 0:
            log = (folder / f"log-{senders}-{i}.txt").read_text("utf-8", "replace")
            raise SystemExit(f"sender {i} exited {child.code}:\n{log[-3000:]}")
    if not received == sent == pending:
        raise SystemExit(f"{pending} planned, {sent} marked sent, {received} received")
    return sent / wall, sent, used, server_cpu, pg_cpu


# --- round trips, read off the wire -------------------------------------------------------


class CountingProxy:
    """A TCP proxy in front of PostgreSQL that counts the client's round trips.

    Every client message after the startup packet is a type byte and a length;
    a simple ``Query`` ('Q') and a ``Sync`` ('S', the end of an extended-protocol
    exchange) each wait for the server's answer: one round trip each. The
    connection must not use TLS (``sslmode=disable``), or nothing can be read.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.round_trips = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def down() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        task = asyncio.ensure_future(down())
        try:
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            up_writer.write(struct.pack("!I", length) + await reader.readexactly(length - 4))
            while True:
                head = await reader.readexactly(5)
                kind, size = head[:1], struct.unpack("!I", head[1:])[0]
                body = await reader.readexactly(size - 4)
                if kind in (b"Q", b"S"):
                    self.round_trips += 1
                up_writer.write(head + body)
                await up_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            up_writer.close()
            await task


def round_trips(folder: Path, base: Path, url: str, server: ServerProcess, sample: int) -> float:
    """Database round trips per message of one sender, on a fresh period of ``sample`` readers."""
    parsed = sa.make_url(url)
    with CountingProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
        proxied = parsed.set(host="127.0.0.1", port=proxy.port)
        proxied = proxied.update_query_dict({"sslmode": "disable"})
        proxied_url = proxied.render_as_string(hide_password=False)
        reset_sends(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # only the first ``sample`` readers are due
            conn.exec_driver_sql(
                "UPDATE subscribers SET status = 'unsubscribed' WHERE id > %s", (sample,)
            )
        config = sender_config(base, 99, server.port, proxied_url)
        pending = plan(config, NOW)
        proxy.round_trips = 0
        result = folder / "result-trips"
        start_sender(config, NOW, result, folder / "log-trips.txt").wait()
        trips = proxy.round_trips
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE subscribers SET status = 'active'")
        engine.dispose()
    if read_child(result).code != 0:
        raise SystemExit((folder / "log-trips.txt").read_text("utf-8", "replace")[-3000:])
    return trips / max(pending, 1)


def run_shared(
    url: str,
    senders: list[int],
    subscribers: int,
    posts: int,
    categories: list[str],
    connections: int,
    sample: int,
) -> None:
    os.environ.setdefault("PUBLISHER_SECRET", SECRET.decode())
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        servers = [stack.enter_context(ServerProcess()) for _ in range(max(senders))]
        base = make_site(folder, posts, categories, servers[0].port, connections)
        started = time.perf_counter()
        with Store(url):
            pass  # the schema
        add_readers_bulk(url, subscribers, categories)
        config = load_config(base)
        print(
            f"{subscribers} subscribers (3 of {len(categories)} categories each), {posts} posts;"
            f" store: {sa.make_url(url).render_as_string(hide_password=True)};"
            f" smtp.connections: {config.smtp.connections} per sender; rate limit off"
            f" (setup {time.perf_counter() - started:.0f} s)"
        )
        print(f"one aiosmtpd server per sender, each in its own process; {os.cpu_count()} cores")
        print(
            f"  {'senders':>7} {'msgs':>7} {'wall s':>7} {'msg/s':>6}   CPU s per 1,000 msgs:"
            f" {'senders':>7} {'smtpd':>6} {'postgres':>8}   peak MB per sender"
        )
        rates: dict[int, float] = {}
        for count in senders:
            rate, sent, used, server_cpu, pg_cpu = one_round(folder, base, url, servers, count)
            rates[count] = rate
            per = 1000 / sent
            cpu = sum(child.cpu for child in used)
            peaks = ", ".join(f"{child.rss_mb:.0f}" for child in used)
            print(
                f"  {count:>7} {sent:>7} {sent / rate:>7.1f} {rate:>6.0f}"
                f"   {'':21}{cpu * per:>7.2f} {server_cpu * per:>6.2f} {pg_cpu * per:>8.2f}"
                f"   {peaks}",
                flush=True,
            )
        if sample:
            trips = round_trips(folder, base, url, servers[0], min(sample, subscribers))
            print(
                f"database round trips per message (one sender, {sample} messages,"
                f" read off the wire): {trips:.2f}"
            )
    if len(rates) > 1:
        first = min(rates)
        print(
            "throughput against one sender: "
            + ", ".join(f"{n}: {rates[n] / rates[first]:.2f}x" for n in sorted(rates))
        )
    if 2 in rates:
        verdict = "PASS" if rates[2] >= TARGET_TWO else "MISS"
        print(f"{verdict}: 2 senders {rates[2]:.0f} msg/s (target >= {TARGET_TWO:.0f})")

"""How long planning a digest period takes for a large list, and how much memory.

Usage::

    python bench/plan.py [--subscribers 100000] [--categories 10] [--history 10]
                         [--posts 10] [--store URL]

Setup (untimed): a temporary site with ``--posts`` posts a week for
``--history`` earlier weeks and the week being planned, spread over
``--categories`` categories; a store (a SQLite file in the temporary folder,
or ``--store``, e.g. the PostgreSQL URL ``bash .ci/postgres`` prints: its
tables are emptied first) with ``--subscribers`` active subscribers, each
following 1 to 3 categories, and the send history of the earlier weeks: a
sent ledger row per subscriber and week, and every followed post of that
week delivered. Rows go in with bulk inserts, not through the store's API,
which would take longer than what is measured.

Timed, each in a fresh child process (wall clock, and the child's own peak
RSS from ``os.wait4``):

1. plan: :func:`publisher.digest.send.plan_period` for the new week, as
   ``digest send`` does before sending anything: it reads the subscribers, the
   ledger and the deliveries and records one pending row per due subscriber;
2. dry run: ``publisher digest send --dry-run``, the whole command.

Target (issue 12): each under 20 s and 400 MB at 100,000 subscribers, on SQLite
and on PostgreSQL. Exit status 0 even when a target is missed: this is a report.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa  # noqa: E402
from build import WRAPPER  # noqa: E402  (times a child and reads its own peak RSS)

from publisher.build.pipeline import load_site  # noqa: E402
from publisher.config import load_config  # noqa: E402
from publisher.store import Store  # noqa: E402
from publisher.store.schema import (  # noqa: E402
    deliveries_table,
    ledger_table,
    metadata,
    runs_table,
    subscribers_table,
)

TARGET_S = 20.0
TARGET_MB = 400.0
# Monday 09:00 UTC: the default schedule (Monday 08:00 in Tokyo) fell due ten hours ago.
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SECRET = "bench-plan-secret"
CHUNK = 10_000

CONFIG = """\
site:
  title: Plan Bench
  url: https://plan.example.com
  language: ja
  timezone: Asia/Tokyo
  email: news@plan.example.com
store:
  url: {url}
"""

CHILD = """\
import os, sys, time, json
from datetime import datetime
from pathlib import Path
os.chdir(sys.argv[1])
from publisher.build.reader import SiteReader
from publisher.config import load_config
from publisher.digest.period import period_at
from publisher.digest.send import plan_period
from publisher.store import Store
now = datetime.fromisoformat(sys.argv[2])
config = load_config(Path("config.yaml"))
start = time.perf_counter()
with Store.open(config) as store:
    period = period_at(config, now)
    posts, *_ = SiteReader(config, build_cache=True).read(now)
    active = {s.id: s for s in store.list_subscribers("active")}
    found = plan_period(config, store, period, posts.published, active, now=now)
    run, rows, planned, nothing = found
print(json.dumps({"seconds": time.perf_counter() - start, "planned": len(planned),
                  "rows": len(rows), "nothing": nothing, "period": period.key}))
"""


def _weeks(history: int) -> list[datetime]:
    """The Sunday of each earlier week and of the week being planned, oldest first."""
    return [NOW - timedelta(days=1, weeks=history - i) for i in range(history + 1)]


def write_site(root: Path, url: str, categories: int, posts: int, history: int) -> list[Any]:
    """The posts and config; returns (week index, post id, category) of every post.

    The ids are the ones publisher gives the posts (read back from the site).
    """
    (root / "posts").mkdir(parents=True)
    (root / "config.yaml").write_text(CONFIG.format(url=url), encoding="utf-8")
    made = []
    for week, day in enumerate(_weeks(history)):
        for n in range(posts):
            category = f"C{(week * posts + n) % categories}"
            name = f"{day:%Y-%m-%d}-w{week}-p{n}"
            text = textwrap.dedent(f"""\
                ---
                title: Week {week} post {n}
                date: {day:%Y-%m-%d} 0{n % 10}:00:00 +0000
                categories: [{category}]
                ---
                Body of post {n} of week {week}.
                """)
            (root / "posts" / f"{name}.md").write_text(text, encoding="utf-8")
            made.append((week, name, category))
    config = load_config(root / "config.yaml")
    read, *_ = load_site(config, NOW)
    ids = {Path(post.source).stem: post.id for post in read.published}
    return [(week, ids[name], category) for week, name, category in made]


def fill_store(
    url: str, subscribers: int, categories: int, history: int, post_ids: list[Any], seed: int
) -> None:
    """Subscribers and the send history, in bulk."""
    rng = random.Random(seed)
    with Store(url):
        pass  # the schema
    engine = sa.create_engine(url)
    joined = NOW - timedelta(weeks=history + 2)
    with engine.begin() as conn:
        tables = [t for t in reversed(metadata.sorted_tables) if t.name != "publisher_meta"]
        if conn.dialect.name == "postgresql":
            # DELETE of a large earlier run's rows would check each subscriber's
            # references row by row; TRUNCATE empties them at once.
            conn.exec_driver_sql("TRUNCATE " + ", ".join(t.name for t in tables) + " CASCADE")
        else:
            for table in tables:
                conn.execute(table.delete())
    follows: list[list[str]] = []
    with engine.begin() as conn:
        rows = []
        for i in range(subscribers):
            chosen = rng.sample([f"C{c}" for c in range(categories)], rng.randint(1, 3))
            follows.append(chosen)
            rows.append(
                {
                    "id": i + 1,
                    "email": f"reader{i:06d}@example.net",
                    "email_key": f"reader{i:06d}@example.net",
                    "name": "",
                    "categories": chosen,
                    "status": "active",
                    "created_at": joined,
                    "updated_at": joined,
                    "confirmed_at": joined,
                }
            )
            if len(rows) == CHUNK:
                conn.execute(subscribers_table.insert(), rows)
                rows = []
        if rows:
            conn.execute(subscribers_table.insert(), rows)
    by_week: dict[int, list[tuple[str, str]]] = {}
    for week, name, category in post_ids:
        by_week.setdefault(week, []).append((name, category))
    for week, day in enumerate(_weeks(history)[:-1]):
        digest = f"bench-{week}"
        due = day + timedelta(hours=14)
        with engine.begin() as conn:
            conn.execute(
                runs_table.insert().values(
                    digest=digest,
                    due_at=due,
                    started_at=due,
                    finished_at=due,
                    status="done",
                    sent=subscribers,
                    skipped=0,
                    failed=0,
                    uncertain=0,
                    note="",
                )
            )
            ledger, deliveries = [], []
            for i, chosen in enumerate(follows):
                sid = i + 1
                ids = [post_id for post_id, cat in by_week[week] if cat in chosen]
                ledger.append(
                    {
                        "digest": digest,
                        "subscriber_id": sid,
                        "email": f"reader{i:06d}@example.net",
                        "status": "sent",
                        "post_ids": ids,
                        "message_id": f"<{digest}.{sid}@plan.example.com>",
                        "attempts": 1,
                        "error": "",
                        "created_at": due,
                        "updated_at": due,
                        "sent_at": due,
                    }
                )
                deliveries += [
                    {"subscriber_id": sid, "post_id": p, "digest": digest, "delivered_at": due}
                    for p in ids
                ]
                if len(ledger) >= CHUNK:
                    conn.execute(ledger_table.insert(), ledger)
                    conn.execute(deliveries_table.insert(), deliveries)
                    ledger, deliveries = [], []
            if ledger:
                conn.execute(ledger_table.insert(), ledger)
                conn.execute(deliveries_table.insert(), deliveries)
    engine.dispose()


def timed(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Run argv in a child; (wall seconds, peak RSS MB, stdout)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result"
        out = Path(tmp) / "out"
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PUBLISHER_SECRET": SECRET}
        with out.open("w") as stdout:
            subprocess.run(
                [sys.executable, "-c", WRAPPER, str(result), *argv],
                cwd=cwd,
                env=env,
                stdout=stdout,
                check=False,
            )
        wall, rss, code = result.read_text().split()[:3]
        text = out.read_text()
        if int(code) != 0 and "--dry-run" not in argv:
            raise SystemExit(f"error: {' '.join(argv)} exited {code}:\n{text}")
        return float(wall), int(rss) / 1024, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time planning a digest period.")
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--categories", type=int, default=10)
    parser.add_argument("--history", type=int, default=10, help="earlier weeks sent")
    parser.add_argument("--posts", type=int, default=10, help="posts a week")
    parser.add_argument("--store", default="", help="store URL (default: a SQLite file)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="publisher-plan-bench-") as tmp:
        root = Path(tmp) / "site"
        url = args.store or f"sqlite:///{root / 'publisher.db'}"
        kind = sa.make_url(url).get_backend_name()
        made = write_site(root, url, args.categories, args.posts, args.history)
        start = time.perf_counter()
        fill_store(url, args.subscribers, args.categories, args.history, made, args.seed)
        print(
            f"{kind}: {args.subscribers:,} subscribers, {args.history} weeks of history,"
            f" {len(made)} posts; set up in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        wall, rss, out = timed([sys.executable, "-c", CHILD, str(root), NOW.isoformat()], root)
        plan = json.loads(out.strip().splitlines()[-1])
        print(
            f"plan:    {wall:6.2f} s whole process ({plan['seconds']:.2f} s planning),"
            f" {rss:6.0f} MB peak; {plan['planned']:,} rows planned,"
            f" {plan['nothing']:,} with nothing new"
        )
        # The plan is recorded now: the dry run of a fresh period is what the
        # target is about, so the period's rows are removed again first.
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(ledger_table.delete().where(ledger_table.c.digest == plan["period"]))
            conn.execute(runs_table.delete().where(runs_table.c.digest == plan["period"]))
        engine.dispose()
        command = [sys.executable, "-m", "publisher", "--now", NOW.isoformat()]
        wall, rss, out = timed([*command, "digest", "send", "--dry-run"], root)
        print(f"dry run: {wall:6.2f} s whole process, {rss:6.0f} MB peak; {out.strip()[-200:]}")
        for label, value, limit in (("seconds", wall, TARGET_S), ("MB", rss, TARGET_MB)):
            verdict = "PASS" if value < limit else "MISS"
            print(f"  dry run {label}: {value:.1f} < {limit:g}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

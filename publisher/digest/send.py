"""The send loop: every due subscriber gets this period's digest exactly once.

Exactly once rests on the ledger in the store, one row per (digest,
subscriber), and on the order of the steps:

1. plan: a ``pending`` row per due subscriber fixes which posts its message
   carries and its Message-ID, before anything is sent;
2. ``mark_sending`` claims the row (a conditional update: two processes
   cannot both claim it);
3. ``backend.send`` hands the message over;
4. ``mark_sent``, only once the server accepted it, records the row as sent
   and its posts as delivered to that subscriber, in one transaction.

A process killed between 2 and 4 leaves a row in ``sending``: the message may
or may not have arrived. Such a row is reported as *uncertain* and never sent
again by itself, because sending it again could deliver it twice; the
operator decides with ``publisher digest resolve``. Everything else resumes:
a run killed at any moment and started again sends what is still pending.

This module does step 1 and the end of the run: it plans the period's rows in
the ledger, reports rows left uncertain, closes rows that can no longer be
sent, and records the period's totals. Steps 2 to 4, in sender threads, and
what each failure does are :mod:`publisher.digest.deliver`'s; which posts a
subscriber gets is decided without the store by :mod:`publisher.digest.plan`.
It never hands a message to the backend itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from datetime import UTC, datetime

from publisher.build.reader import SiteReader
from publisher.config import Config
from publisher.digest.claimed import ClaimedWork, SharedBudget, wait_for_leases
from publisher.digest.deliver import Item, WorkSource, deliver
from publisher.digest.message import MessageBuilder
from publisher.digest.period import Period, period_at
from publisher.digest.plan import plan_selections, selection_for
from publisher.digest.report import SendReport
from publisher.digest.select import Selection
from publisher.mail.base import Backend
from publisher.mail.headers import make_message_id
from publisher.mail.tokens import load_secret
from publisher.site.posts import Post
from publisher.store import DigestRun, LedgerRow, Store, Subscriber

__all__ = ["plan_period", "send_digest"]


def send_digest(
    config: Config,
    store: Store,
    backend: Backend,
    *,
    now: datetime,
    period: Period | None = None,
    dry_run: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    secret: bytes | None = None,
    clock: Callable[[], datetime] | None = None,
    late_ok: bool = False,
) -> SendReport:
    """Send the digest of ``period`` (default: the latest at or before ``now``) to all due.

    Idempotent per period: a second call sends only what the first left
    pending, and a call after a crash resumes through the ledger. With
    ``dry_run`` nothing is recorded, written or sent; every message is still
    built, so template and header problems show. ``secret`` signs the links
    (default: from ``store.secret_env``); ``clock`` stamps ledger changes
    (default: ``now``). ``late_ok`` sends a period recorded as skipped (too late),
    once: the run is reopened and, once sent, done.

    ``backend`` must already be open (``with make_backend(config) as backend``);
    a dry run never uses it.
    """
    secret = secret if secret is not None else load_secret(config)
    # A missing or malformed From stops the run before anything is planned.
    builder = MessageBuilder(config)
    tick = clock or (lambda: now)
    period = period or period_at(config, now)
    if period is None:
        return SendReport("", stopped="digest.schedule has not fired yet", dry_run=dry_run)
    key = period.key
    report = SendReport(key, dry_run=dry_run)

    # Through the build's cache, read-only: only posts changed since the last build are parsed.
    posts, _warnings, _stale, _parsed = SiteReader(config, build_cache=True).read(now)
    by_id = {post.id: post for post in posts.published}
    active = {s.id: s for s in store.list_subscribers("active")}
    run, rows, planned, report.skipped = plan_period(
        config, store, period, posts.published, active, now=now, dry_run=dry_run, late_ok=late_ok
    )

    shared = store.shared_senders and not dry_run
    pending = [row for row in rows.values() if row.status == "pending"]
    for row in rows.values():
        # With senders sharing the period, a row another one is handing over right
        # now is in flight, not uncertain: those are judged once this sender is done.
        if row.status == "sending" and not shared:
            _uncertain(report, row, key)
        elif row.status in ("sent", "failed") and row.subscriber_id in active:
            report.skipped += 1

    def items(batch: Iterable[LedgerRow]) -> list[Item]:
        return _items(store, report, batch, active, by_id, planned, dry_run, tick)

    def send(
        todo: list[Item],
        source: WorkSource | None = None,
        total: int = 0,
        stop: threading.Event | None = None,
    ) -> None:
        deliver(
            config,
            store,
            backend,
            builder,
            report,
            period,
            todo,
            rows,
            by_id,
            secret,
            tick,
            dry_run,
            on_progress,
            source=source,
            total=total,
            stop=stop,
        )

    todo: list[Item] = []
    if shared:
        claimed: set[int] = set()
        if pending:
            # Rows are claimed a batch at a time, so other senders can share the period.
            stop = threading.Event()
            _share_rate_limit(config, store, backend, key)
            work = ClaimedWork(
                store,
                key,
                items,
                batch=config.digest.claim_batch,
                lease=config.digest.lease,
                clock=_wall_clock,
                stop=stop,
            )
            with work:  # it waits for the other senders' leases before it stops
                send([], source=work, total=len(pending), stop=stop)
            claimed = work.claimed
        else:
            wait_for_leases(store, key, clock=_wall_clock)
        # Rows left sending by other senders, not in flight any more: uncertain. (This
        # sender's own were counted as they happened.)
        flying = store.in_flight(key, now=_wall_clock())
        for row in store.ledger(key, "sending"):
            if row.id not in claimed and row.id not in flying:
                _uncertain(report, row, key)
    else:
        todo = items(pending)
    if dry_run:
        todo += [
            Item(0, active[sid], sel, make_message_id(config, key, sid))
            for sid, sel in planned.items()
        ]
    if todo:
        send(todo)
    # A run left "failed" (something was owed) is brought up to date even when this
    # call had nothing to send: a resolved uncertain message may have settled it.
    if not dry_run and (run is None or run.status not in ("done", "skipped") or todo or pending):
        _finish(store, key, report, tick, shared=shared)
    return report


def plan_period(
    config: Config,
    store: Store,
    period: Period,
    published: list[Post],
    active: dict[int, Subscriber],
    *,
    now: datetime,
    dry_run: bool = False,
    late_ok: bool = False,
) -> tuple[DigestRun | None, dict[int, LedgerRow], dict[int, Selection], int]:
    """Plan ``period``'s ledger rows, unless a finished run already did; what it holds now.

    Returns the run, every row of the period by subscriber, the selections this
    call planned (to be reused as they are) and how many active subscribers have
    nothing new. With ``dry_run`` nothing is recorded: the selections are only
    worked out. Senders sharing the period (PostgreSQL) wait here while one of
    them plans it, then find it planned; a dry run waits for no one.
    """
    key = period.key
    planning = store.planning_lock(key) if not dry_run else nullcontext()
    with planning:
        run = store.get_run(key)
        if late_ok and run is not None and run.status == "skipped" and not dry_run:
            run = store.reopen_run(key, now=now)
        rows = {row.subscriber_id: row for row in store.ledger(key)}
        # Plan, unless a finished run of this period already did: asking twice for the
        # same period must not send anyone a second digest.
        planned: dict[int, Selection] = {}
        if not (run is None or run.status == "running" or (late_ok and run.status == "skipped")):
            return run, rows, planned, sum(1 for sid in active if sid not in rows)
        if run is None and not dry_run:
            store.start_run(key, due_at=period.due, now=now)
        unplanned = [s for s in active.values() if s.id not in rows]
        delivered = store.delivered_post_ids_by_subscriber(s.id for s in unplanned)
        planned, nothing = plan_selections(
            config, period, published, unplanned, delivered.__getitem__
        )
        # A hundred thousand subscribers' histories: let them go before the rows come.
        del delivered, unplanned
        if planned and not dry_run:
            plans = [
                (sid, sel.post_ids, make_message_id(config, key, sid))
                for sid, sel in planned.items()
            ]
            for row in store.plan_sends(key, plans, now=now):
                rows[row.subscriber_id] = row
    return run, rows, planned, nothing


def _uncertain(report: SendReport, row: LedgerRow, key: str) -> None:
    report.uncertain += 1
    report.problems.append(
        f"{row.email}: uncertain: a previous run stopped after handing it over;"
        f" check, then run: publisher digest resolve {row.email} --period {key}"
        " --sent|--not-sent"
    )


def _wall_clock() -> datetime:
    # Leases and send slots are about processes alive now and messages per real
    # second: never the run's own clock, which --now may hold still.
    return datetime.now(UTC)


def _share_rate_limit(config: Config, store: Store, backend: Backend, key: str) -> None:
    """Give the backend the period's shared schedule for its rate limit, if it has one.

    ``postmark.rate_limit`` for Postmark (the account's), else ``smtp.rate_limit``.
    """
    rate = config.postmark.rate_limit if backend.name == "postmark" else config.smtp.rate_limit
    if rate > 0 and hasattr(backend, "limiter"):
        # A signing wrapper passes attributes through to the backend it wraps.
        target = getattr(backend, "inner", backend)
        target.limiter = SharedBudget(store, key, rate, clock=_wall_clock)


def _items(
    store: Store,
    report: SendReport,
    rows: Iterable[LedgerRow],
    active: dict[int, Subscriber],
    by_id: dict[str, Post],
    planned: dict[int, Selection],
    dry_run: bool,
    tick: Callable[[], datetime],
) -> list[Item]:
    """The messages of pending ``rows`` that can still be sent; the others are closed as failed.

    A row planned by this call reuses the selection it was planned from.
    """
    rows = list(rows)
    # A row planned earlier (resumed, put back by digest retry, or planned by another
    # sender of the period) may carry posts that a later period's digest has delivered
    # meanwhile: they are not sent twice.
    resumed = [
        row.subscriber_id
        for row in rows
        if row.subscriber_id in active
        and (
            row.subscriber_id not in planned or planned[row.subscriber_id].post_ids != row.post_ids
        )
    ]
    delivered = store.delivered_post_ids_by_subscriber(resumed) if resumed else {}
    todo: list[Item] = []
    for row in rows:
        sid = row.subscriber_id
        subscriber = active.get(sid)
        reason = ""
        if subscriber is None:
            reason = "not sent: the subscriber is no longer active"
        else:
            if sid in delivered:
                selection = selection_for(row, subscriber, by_id, delivered[sid])
            else:
                selection = planned[sid]
            if not selection.groups:
                reason = "not sent: its posts are unpublished, or a later digest delivered them"
        if reason:
            report.skipped += 1
            if not dry_run:
                store.mark_failed(row.id, reason, now=tick())
            continue
        assert subscriber is not None
        todo.append(Item(row.id, subscriber, selection, row.message_id))
    return todo


def _finish(
    store: Store, key: str, report: SendReport, tick: Callable[[], datetime], *, shared: bool
) -> None:
    """Record the period's totals, read from the ledger: what went out and what is owed.

    With senders sharing the period, one that finishes while another still holds
    rows leaves the totals to the last: the period is still running.
    """
    count = store.ledger_counts(key)
    held = count["pending"] or count["sending"]
    if shared and held and store.next_lease_end(key, now=_wall_clock()) is not None:
        return  # (this sender's own rows were given back when it finished)
    owed = count["pending"] or count["sending"] or report.stopped
    store.finish_run(
        key,
        status="failed" if owed else "done",
        sent=count["sent"],
        skipped=report.skipped,
        failed=count["failed"] + count["pending"],
        uncertain=count["sending"],
        note=report.stopped,
        now=tick(),
    )

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

What each failure does: a permanent one (5xx) fails that row and the run goes
on; a temporary one puts the row back to pending for a later run; a backend
that cannot work at all (login refused) stops the run; so do failures past
``smtp.error_threshold``, since at that point something is wrong for everyone.

Speed: a backend that can send from several threads (the SMTP backend, one
connection per thread, ``smtp.connections``) gets that many sender threads.
SMTP is a conversation: after the message the client waits for the server's
verdict, and meanwhile the other thread renders and records. Each thread
takes the next item from one shared list and still claims its row in the
ledger before sending, so no row is ever sent by two threads; a stop (the
error threshold, a backend that cannot work, an exception, Ctrl-C) stops
every thread after the message it has in hand, which is recorded as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from publisher.build.reader import SiteReader
from publisher.config import Config
from publisher.digest.message import MessageBuilder
from publisher.digest.period import Period, next_due, period_at, period_key
from publisher.digest.render import DigestRenderer, RenderedDigest, post_views, recipient_for
from publisher.digest.select import Selection, first_digest_floor, group_posts, select
from publisher.digest.webcopy import web_copy_url, write_web_copy
from publisher.errors import (
    PermanentSendError,
    PublisherError,
    SendError,
    StoreError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail.base import Backend, Message
from publisher.mail.headers import check_header, make_message_id
from publisher.mail.tokens import load_secret
from publisher.site.posts import Post
from publisher.store import LedgerRow, Store, Subscriber

__all__ = ["Preview", "SendReport", "plan_selections", "preview_digest", "send_digest"]


@dataclass
class SendReport:
    """What one ``send_digest`` call did (not the period's totals: see the ledger)."""

    period: str
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    uncertain: int = 0
    stopped: str = ""  # why the run stopped early, or ""
    problems: list[str] = field(default_factory=list)  # one line per failed/uncertain message
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing is uncertain and the run was not stopped."""
        return not (self.failed or self.uncertain or self.stopped)

    def summary(self) -> str:
        """The closing line of ``publisher digest send``."""
        verb = "would send" if self.dry_run else "sent"
        line = (
            f"digest {self.period or '-'}: {verb} {self.sent}, skipped {self.skipped},"
            f" failed {self.failed}, uncertain {self.uncertain}"
        )
        return line + (f"; stopped: {self.stopped}" if self.stopped else "")


def _joined(subscriber: Subscriber) -> datetime:
    return subscriber.confirmed_at or subscriber.created_at


def _first_dues(config: Config, joined: Iterable[datetime]) -> dict[datetime, datetime]:
    """The first scheduled digest at or after each time in ``joined``.

    One schedule lookup per interval between fire times that holds someone's
    joining, rather than one per subscriber: ten thousand subscribers who
    joined in the same few weeks cost a few lookups.
    """
    found: dict[datetime, datetime] = {}
    fire: datetime | None = None
    for moment in sorted(set(joined)):
        # The first fire at or after an earlier moment is also the first at or
        # after this one, unless this one is past it.
        if fire is None or moment > fire:
            fire = next_due(config, moment - timedelta(microseconds=1))
        found[moment] = fire
    return found


def plan_selections(
    config: Config,
    period: Period,
    published: list[Post],
    subscribers: Iterable[Subscriber],
    delivered: Callable[[int], set[str]],
) -> tuple[dict[int, Selection], int]:
    """Each due subscriber's digest, and how many subscribers have nothing new.

    ``delivered(subscriber_id)`` gives the posts already sent to them.
    """
    chosen: dict[int, Selection] = {}
    nothing = 0
    window = config.digest.first_window
    subscribers = list(subscribers)
    first_dues = _first_dues(config, [_joined(s) for s in subscribers if _joined(s) <= period.due])
    for subscriber in subscribers:
        joined = _joined(subscriber)
        first_due = first_dues[joined] if joined <= period.due else period.due
        floor = first_digest_floor(joined, period.due, first_due, window)
        selection = select(published, subscriber, delivered(subscriber.id), floor)
        if selection is None:
            nothing += 1
        else:
            chosen[subscriber.id] = selection
    return chosen, nothing


def _selection_for(row: LedgerRow, subscriber: Subscriber, by_id: dict[str, Post]) -> Selection:
    """The message a planned row carries: its fixed posts, grouped as the subscriber reads."""
    posts = [by_id[post_id] for post_id in row.post_ids if post_id in by_id]
    return group_posts(posts, subscriber.categories)


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
    run = store.get_run(key)
    if late_ok and run is not None and run.status == "skipped" and not dry_run:
        run = store.reopen_run(key, now=now)
    rows = {row.subscriber_id: row for row in store.ledger(key)}

    # Plan, unless a finished run of this period already did: asking twice for the
    # same period must not send anyone a second digest.
    planned: dict[int, Selection] = {}
    if run is None or run.status == "running" or (late_ok and run.status == "skipped"):
        if run is None and not dry_run:
            store.start_run(key, due_at=period.due, now=now)
        unplanned = [s for s in active.values() if s.id not in rows]
        delivered = store.delivered_post_ids_by_subscriber(s.id for s in unplanned)
        planned, report.skipped = plan_selections(
            config, period, posts.published, unplanned, delivered.__getitem__
        )
        if planned and not dry_run:
            for row in store.plan_sends(
                key,
                [
                    (sid, sel.post_ids, make_message_id(config, key, sid))
                    for sid, sel in planned.items()
                ],
                now=now,
            ):
                rows[row.subscriber_id] = row
    else:
        report.skipped = sum(1 for sid in active if sid not in rows)

    for row in rows.values():
        if row.status == "sending":
            report.uncertain += 1
            report.problems.append(
                f"{row.email}: uncertain: a previous run stopped after handing it over;"
                f" check, then run: publisher digest resolve {row.email} --period {key}"
                " --sent|--not-sent"
            )
        elif row.status in ("sent", "failed") and row.subscriber_id in active:
            report.skipped += 1

    todo = _work(store, report, rows, active, by_id, planned, dry_run, tick)
    if dry_run:
        todo += [
            _Item(0, active[sid], sel, make_message_id(config, key, sid))
            for sid, sel in planned.items()
        ]
    if todo:
        _deliver(
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
        )
    # A run left "failed" (something was owed) is brought up to date even when this
    # call had nothing to send: a resolved uncertain message may have settled it.
    if not dry_run and (run is None or run.status not in ("done", "skipped") or todo):
        _finish(store, key, report, tick)
    return report


@dataclass(frozen=True)
class _Item:
    """One message to send: its ledger row (0 in a dry run), recipient and content."""

    row_id: int
    subscriber: Subscriber
    selection: Selection
    message_id: str


def _work(
    store: Store,
    report: SendReport,
    rows: dict[int, LedgerRow],
    active: dict[int, Subscriber],
    by_id: dict[str, Post],
    planned: dict[int, Selection],
    dry_run: bool,
    tick: Callable[[], datetime],
) -> list[_Item]:
    """The pending rows that can still be sent; the others are closed as failed.

    A row planned by this call reuses the selection it was planned from.
    """
    todo: list[_Item] = []
    for sid, row in rows.items():
        if row.status != "pending":
            continue
        subscriber = active.get(sid)
        reason = ""
        if subscriber is None:
            reason = "not sent: the subscriber is no longer active"
        else:
            selection = planned.get(sid) or _selection_for(row, subscriber, by_id)
            if selection.post_ids != row.post_ids:
                selection = _selection_for(row, subscriber, by_id)
            if not selection.groups:
                reason = "not sent: none of its posts is published any more"
        if reason:
            report.skipped += 1
            if not dry_run:
                store.mark_failed(row.id, reason, now=tick())
            continue
        assert subscriber is not None
        todo.append(_Item(row.id, subscriber, selection, row.message_id))
    return todo


class _Shared:
    """What the sender threads share: the work, the report, and whether to stop."""

    def __init__(
        self,
        todo: list[_Item],
        report: SendReport,
        threshold: int,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        self._items: Iterator[_Item] = iter(todo)
        self._total = len(todo)
        self._done = 0
        self._report = report
        self._threshold = threshold
        self._failures = 0  # failed or uncertain in this run
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._progress_lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None  # the first exception a thread raised

    def take(self) -> _Item | None:
        """The next message to send, or None when all are taken or the run stops."""
        with self._lock:
            return None if self.stop.is_set() else next(self._items, None)

    def record(self, outcome: str, problem: str = "", stopped: str = "") -> None:
        """Count one message's outcome ("sent", "skipped", "failed", "uncertain")."""
        report = self._report
        with self._lock:
            setattr(report, outcome, getattr(report, outcome) + 1)
            # Only this run's failures count: uncertain rows left by an earlier run
            # are in the report too, and must not stop every later run at once.
            if outcome in ("failed", "uncertain"):
                self._failures += 1
            if problem:
                report.problems.append(problem)
            if stopped and not report.stopped:
                report.stopped = stopped
            if not report.stopped and self._failures > self._threshold:
                report.stopped = (
                    f"{self._failures} messages failed, more than"
                    f" smtp.error_threshold ({self._threshold}); the rest stay pending"
                )
            if report.stopped:
                self.stop.set()

    def progress(self) -> None:
        """Tell the caller one more message is done (and recorded)."""
        if self._on_progress is None:
            return
        with self._progress_lock:
            self._done += 1
            self._on_progress(self._done, self._total)

    def fail(self, error: BaseException) -> None:
        """A thread stopped on an exception: stop the others, keep the first to raise."""
        with self._lock:
            if self.error is None:
                self.error = error
        self.stop.set()


def _deliver(
    config: Config,
    store: Store,
    backend: Backend,
    builder: MessageBuilder,
    report: SendReport,
    period: Period,
    todo: list[_Item],
    rows: dict[int, LedgerRow],
    by_id: dict[str, Post],
    secret: bytes,
    tick: Callable[[], datetime],
    dry_run: bool,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """Render, then send or (dry run) only build, every message in ``todo``."""
    key = period.key
    # Each post is prepared once per run, however many digests show it.
    needed = {post.id: post for item in todo for post in item.selection.posts}
    shown = {pid: by_id[pid] for row in rows.values() for pid in row.post_ids if pid in by_id}
    shown.update(needed)
    renderer = DigestRenderer(
        config, period, post_views(config, shown.values()), web_url=web_copy_url(config, key)
    )
    if not dry_run:
        # Written before the first message goes out, so its link works on arrival.
        newest_first = sorted(shown.values(), key=lambda p: (p.date, p.id), reverse=True)
        write_web_copy(config, key, renderer.web_copy(group_posts(newest_first, ())))

    shared = _Shared(todo, report, config.smtp.error_threshold, on_progress)

    def work() -> None:
        while (item := shared.take()) is not None:
            subscriber = item.subscriber
            recipient = recipient_for(
                config, subscriber.id, subscriber.email, subscriber.name, secret
            )
            try:
                message = builder.prepare(
                    recipient=recipient,
                    content=renderer.prepare(item.selection, recipient),
                    message_id=item.message_id,
                    now=tick(),
                )
            except (PermanentSendError, ValueError, LookupError) as exc:
                # A header would carry a line break, or this reader's message cannot be
                # made at all: that one row fails, with its reason, and the run goes on.
                reason = str(exc) if isinstance(exc, PublisherError) else f"cannot build: {exc}"
                if not dry_run:
                    store.mark_failed(item.row_id, reason, now=tick())
                shared.record("failed", f"{subscriber.email}: failed: {reason}")
            else:
                if dry_run:
                    shared.record("sent")
                else:
                    _send_one(store, backend, shared, item.row_id, subscriber.email, message, tick)
            shared.progress()

    def helper() -> None:
        try:
            # A connection of its own first: a server that allows fewer connections
            # than smtp.connections refuses this one, and the others carry on.
            connect: Callable[[], None] | None = getattr(backend, "connect", None)
            if connect is not None:
                try:
                    connect()
                except SendError:
                    return
            work()
        except BaseException as exc:
            shared.fail(exc)

    count = 1 if dry_run else max(1, min(getattr(backend, "concurrency", 1), len(todo)))
    helpers = [
        threading.Thread(target=helper, name=f"digest-sender-{i}", daemon=True)
        for i in range(1, count)
    ]
    for thread in helpers:
        thread.start()
    try:
        work()  # this thread sends too, so Ctrl-C lands in a sender
    finally:
        shared.stop.set()
        for thread in helpers:
            thread.join()
    if shared.error is not None:
        raise shared.error


def _send_one(
    store: Store,
    backend: Backend,
    shared: _Shared,
    row_id: int,
    email: str,
    message: Message,
    tick: Callable[[], datetime],
) -> None:
    """Claim, hand over and record one message."""
    try:
        store.mark_sending(row_id, now=tick())
    except StoreError:
        # Another process claimed it first; it is theirs to send.
        shared.record("skipped")
        return
    try:
        backend.send(message)
    except PermanentSendError as exc:
        store.mark_failed(row_id, str(exc), now=tick())
        shared.record("failed", f"{email}: failed: {exc}")
    except TemporarySendError as exc:
        store.mark_pending(row_id, str(exc), now=tick())
        shared.record("failed", f"{email}: failed for now (will retry): {exc}")
    except UncertainSendError as exc:
        # Left in "sending": it may have arrived, so only an operator may resend it.
        shared.record("uncertain", f"{email}: uncertain: {exc}")
    except SendError as exc:
        # The backend cannot work at all (e.g. login refused): nothing was handed over.
        store.mark_pending(row_id, str(exc), now=tick())
        shared.record("failed", stopped=str(exc))
    else:
        store.mark_sent(row_id, now=tick())
        shared.record("sent")


def _finish(store: Store, key: str, report: SendReport, tick: Callable[[], datetime]) -> None:
    """Record the period's totals, read from the ledger: what went out and what is owed."""
    ledger = store.ledger(key)
    count = {status: 0 for status in ("pending", "sending", "sent", "failed")}
    for row in ledger:
        count[row.status] += 1
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


@dataclass(frozen=True)
class Preview:
    """What ``publisher digest preview`` shows: one subscriber's digest, or nothing new."""

    period: Period
    email: str
    rendered: RenderedDigest | None  # None: nothing new for this subscriber
    posts: int


def preview_digest(
    config: Config, *, now: datetime, store: Store | None = None, email: str | None = None
) -> Preview:
    """Render the current period's digest for ``email`` (or for someone following
    everything) without sending or recording anything. Links carry a fake token.
    """
    period = period_at(config, now) or Period(period_key(config, now), now)
    if email is None or store is None:
        reader = Subscriber(
            id=0,
            email="preview@example.invalid",
            name="",
            categories=(),
            status="active",
            created_at=period.due,
            updated_at=period.due,
            confirmed_at=None,
        )
        delivered: Callable[[int], set[str]] = lambda _id: set()  # noqa: E731
    else:
        found = store.get_subscriber(email)
        if found is None:
            raise PublisherError(f"{email}: no such subscriber")
        reader, delivered = found, store.delivered_post_ids
    published = SiteReader(config, build_cache=True).read(now).posts.published
    chosen, _nothing = plan_selections(config, period, published, [reader], delivered)
    selection = chosen.get(reader.id)
    if selection is None:
        return Preview(period, reader.email, None, 0)
    renderer = DigestRenderer(
        config,
        period,
        post_views(config, selection.posts),
        web_url=web_copy_url(config, period.key),
    )
    recipient = recipient_for(config, reader.id, reader.email, reader.name, None)
    rendered = renderer.render(selection, recipient)
    check_header("Subject", rendered.subject)
    return Preview(period, reader.email, rendered, len(selection.posts))

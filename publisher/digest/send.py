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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage

from publisher.backends.base import Backend
from publisher.build import load_site
from publisher.config import Config
from publisher.digest.message import build_message, check_header, make_message_id, sender
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
from publisher.posts import Post
from publisher.store import LedgerRow, Store, Subscriber
from publisher.tokens import load_secret

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
    for subscriber in subscribers:
        joined = _joined(subscriber)
        first_due = (
            next_due(config, joined - timedelta(microseconds=1))
            if joined <= period.due
            else period.due
        )
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
) -> SendReport:
    """Send the digest of ``period`` (default: the latest at or before ``now``) to all due.

    Idempotent per period: a second call sends only what the first left
    pending, and a call after a crash resumes through the ledger. With
    ``dry_run`` nothing is recorded, written or sent; every message is still
    built, so template and header problems show. ``secret`` signs the links
    (default: from ``store.secret_env``); ``clock`` stamps ledger changes
    (default: ``now``).

    ``backend`` must already be open (``with make_backend(config) as backend``);
    a dry run never uses it.
    """
    secret = secret if secret is not None else load_secret(config)
    sender(config)  # a missing or malformed From stops the run before anything is planned
    tick = clock or (lambda: now)
    period = period or period_at(config, now)
    if period is None:
        return SendReport("", stopped="digest.schedule has not fired yet", dry_run=dry_run)
    key = period.key
    report = SendReport(key, dry_run=dry_run)

    posts, _warnings, _stale, _parsed = load_site(config, now)
    by_id = {post.id: post for post in posts.published}
    active = {s.id: s for s in store.list_subscribers("active")}
    run = store.get_run(key)
    rows = {row.subscriber_id: row for row in store.ledger(key)}

    # Plan, unless a finished run of this period already did: asking twice for the
    # same period must not send anyone a second digest.
    planned: dict[int, Selection] = {}
    if run is None or run.status == "running":
        if run is None and not dry_run:
            store.start_run(key, due_at=period.due, now=now)
        unplanned = [s for s in active.values() if s.id not in rows]
        planned, report.skipped = plan_selections(
            config, period, posts.published, unplanned, store.delivered_post_ids
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

    todo = _work(store, report, rows, active, by_id, dry_run, tick)
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
    dry_run: bool,
    tick: Callable[[], datetime],
) -> list[_Item]:
    """The pending rows that can still be sent; the others are closed as failed."""
    todo: list[_Item] = []
    for sid, row in rows.items():
        if row.status != "pending":
            continue
        subscriber = active.get(sid)
        reason = ""
        if subscriber is None:
            reason = "not sent: the subscriber is no longer active"
        else:
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


def _deliver(
    config: Config,
    store: Store,
    backend: Backend,
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

    threshold = config.smtp.error_threshold
    for done, item in enumerate(todo, start=1):
        subscriber = item.subscriber
        recipient = recipient_for(config, subscriber.id, subscriber.email, subscriber.name, secret)
        try:
            message = build_message(
                config,
                recipient=recipient,
                rendered=renderer.render(item.selection, recipient),
                message_id=item.message_id,
                now=tick(),
            )
        except PermanentSendError as exc:
            # A header would carry a line break: refused, never sent.
            report.failed += 1
            report.problems.append(f"{subscriber.email}: failed: {exc}")
            if not dry_run:
                store.mark_failed(item.row_id, str(exc), now=tick())
        else:
            if dry_run:
                report.sent += 1
            else:
                _send_one(store, backend, report, item.row_id, subscriber.email, message, tick)
        if on_progress is not None:
            on_progress(done, len(todo))
        if report.stopped:
            break
        if report.failed + report.uncertain > threshold:
            report.stopped = (
                f"{report.failed + report.uncertain} messages failed, more than"
                f" smtp.error_threshold ({threshold}); the rest stay pending"
            )
            break


def _send_one(
    store: Store,
    backend: Backend,
    report: SendReport,
    row_id: int,
    email: str,
    message: EmailMessage,
    tick: Callable[[], datetime],
) -> None:
    """Claim, hand over and record one message."""
    try:
        store.mark_sending(row_id, now=tick())
    except StoreError:
        # Another process claimed it first; it is theirs to send.
        report.skipped += 1
        return
    try:
        backend.send(message)
    except PermanentSendError as exc:
        store.mark_failed(row_id, str(exc), now=tick())
        report.failed += 1
        report.problems.append(f"{email}: failed: {exc}")
    except TemporarySendError as exc:
        store.mark_pending(row_id, str(exc), now=tick())
        report.failed += 1
        report.problems.append(f"{email}: failed for now (will retry): {exc}")
    except UncertainSendError as exc:
        # Left in "sending": it may have arrived, so only an operator may resend it.
        report.uncertain += 1
        report.problems.append(f"{email}: uncertain: {exc}")
    except SendError as exc:
        # The backend cannot work at all (e.g. login refused): nothing was handed over.
        store.mark_pending(row_id, str(exc), now=tick())
        report.failed += 1
        report.stopped = str(exc)
    else:
        store.mark_sent(row_id, now=tick())
        report.sent += 1


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
    published = load_site(config, now)[0].published
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

"""The sender threads: render, build, claim, hand over and record each message of a run.

:func:`deliver` is given the work by :mod:`publisher.digest.send`: one
:class:`Item` per message whose ledger row is already planned. It never plans
and never picks rows. It writes the period's web copy once, before the first
message, then for each item renders the digest, builds the message, claims the
row (``mark_sending``), hands the message over and records the outcome
(``mark_sent``, ``mark_failed``, ``mark_pending``); a dry run only renders and
builds. The only module of :mod:`publisher.digest` that uses the backend.

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

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from publisher.config import Config
from publisher.digest.message import MessageBuilder
from publisher.digest.period import Period
from publisher.digest.render import DigestRenderer, recipient_for
from publisher.digest.report import SendReport
from publisher.digest.select import Selection, group_posts
from publisher.digest.views import post_views
from publisher.digest.webcopy import web_copy_url, write_web_copy
from publisher.errors import (
    PermanentSendError,
    PublisherError,
    SendError,
    StoreError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail.base import Backend, BatchBackend, BatchStopped, Message, Outcome
from publisher.mail.verp import return_path
from publisher.site.posts import Post
from publisher.store import LedgerRow, Store, Subscriber

__all__ = ["Item", "WorkSource", "deliver"]


@dataclass(frozen=True)
class Item:
    """One message to send: its ledger row (0 in a dry run), recipient and content."""

    row_id: int
    subscriber: Subscriber
    selection: Selection
    message_id: str


class WorkSource(Protocol):
    """Where the sender threads take their messages from (see :mod:`.claimed`)."""

    def take(self) -> Item | None:
        """The next message, or None when there is none left; safe from every thread."""
        ...

    def take_batch(self, size: int) -> list[Item]:
        """Up to ``size`` messages, waiting (as ``take`` does) only for the first; [] at the end."""
        ...

    def note(self, outcome: str) -> None:
        """One message's outcome, as :meth:`_Shared.record` counts it."""
        ...


class _ListWork:
    """A list of items known in advance (a single sender, a dry run)."""

    def __init__(self, items: Sequence[Item]) -> None:
        self._items: Iterator[Item] = iter(items)
        self._lock = threading.Lock()

    def take(self) -> Item | None:
        with self._lock:
            return next(self._items, None)

    def take_batch(self, size: int) -> list[Item]:
        with self._lock:
            return list(itertools.islice(self._items, size))

    def note(self, outcome: str) -> None:
        return None


class _Shared:
    """What the sender threads share: the work, the report, and whether to stop."""

    def __init__(
        self,
        work: WorkSource,
        total: int,
        report: SendReport,
        threshold: int,
        on_progress: Callable[[int, int], None] | None,
        stop: threading.Event,
    ) -> None:
        self._work = work
        self._total = total
        self._done = 0
        self._report = report
        self._threshold = threshold
        self._failures = 0  # failed or uncertain in this run
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._progress_lock = threading.Lock()
        self.stop = stop
        self.error: BaseException | None = None  # the first exception a thread raised

    def take(self) -> Item | None:
        """The next message to send, or None when all are taken or the run stops."""
        return None if self.stop.is_set() else self._work.take()

    def take_batch(self, size: int) -> list[Item]:
        """Up to ``size`` messages to send together; [] when all are taken or the run stops."""
        return [] if self.stop.is_set() else self._work.take_batch(size)

    def halt(self, reason: str) -> None:
        """Stop the run: the backend cannot work at all."""
        with self._lock:
            if not self._report.stopped:
                self._report.stopped = reason
        self.stop.set()

    def record(self, outcome: str, problem: str = "", stopped: str = "") -> None:
        """Count one message's outcome ("sent", "skipped", "failed", "uncertain")."""
        report = self._report
        self._work.note(outcome)
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

    @property
    def total(self) -> int:
        return self._total

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


def deliver(
    config: Config,
    store: Store,
    backend: Backend,
    builder: MessageBuilder,
    report: SendReport,
    period: Period,
    todo: list[Item],
    rows: dict[int, LedgerRow],
    by_id: dict[str, Post],
    secret: bytes,
    tick: Callable[[], datetime],
    dry_run: bool,
    on_progress: Callable[[int, int], None] | None,
    *,
    source: WorkSource | None = None,
    total: int = 0,
    stop: threading.Event | None = None,
) -> None:
    """Render, then send or (dry run) only build, every message in ``todo``.

    With ``source`` the messages come from there instead (the rows this sender
    claims, when several share the period; ``total`` for the progress bar),
    and ``stop`` is the event that stops both; ``rows`` then holds the rows the
    period planned, which name every post its digests may show.
    """
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

    shared = _Shared(
        source if source is not None else _ListWork(todo),
        total if source is not None else len(todo),
        report,
        config.smtp.error_threshold,
        on_progress,
        stop or threading.Event(),
    )
    bounce_address = config.digest.bounce_address

    def build(item: Item) -> Message | None:
        """The item's message; None (its row failed, with its reason) if it cannot be made."""
        subscriber = item.subscriber
        recipient = recipient_for(config, subscriber.id, subscriber.email, subscriber.name, secret)
        try:
            message = builder.prepare(
                recipient=recipient,
                content=renderer.prepare(item.selection, recipient),
                message_id=item.message_id,
                now=tick(),
            )
            if bounce_address:
                # VERP: a bounce of this message comes back naming its ledger row.
                message = replace(message, sender=return_path(secret, bounce_address, item.row_id))
        except (PermanentSendError, ValueError, LookupError) as exc:
            # A header would carry a line break, or this reader's message cannot be
            # made at all: that one row fails, with its reason, and the run goes on.
            reason = str(exc) if isinstance(exc, PublisherError) else f"cannot build: {exc}"
            if not dry_run:
                store.mark_failed(item.row_id, reason, now=tick())
            shared.record("failed", f"{subscriber.email}: failed: {reason}")
            return None
        return message

    def work() -> None:
        while (item := shared.take()) is not None:
            message = build(item)
            if message is not None:
                if dry_run:
                    shared.record("sent")
                else:
                    _send_one(
                        store,
                        backend,
                        shared,
                        item.row_id,
                        item.subscriber.email,
                        message,
                        tick,
                        key,
                    )
            shared.progress()

    def work_in_batches(batches: BatchBackend) -> None:
        while items := shared.take_batch(batches.batch_size):
            ready = [(item, message) for item in items if (message := build(item)) is not None]
            _send_batch(store, batches, shared, ready, tick, key)
            for _ in items:
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

    if not dry_run and isinstance(backend, BatchBackend):
        try:
            work_in_batches(backend)
        finally:
            shared.stop.set()
        return
    count = 1 if dry_run else max(1, min(getattr(backend, "concurrency", 1), shared.total))
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
    period_key: str,
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
        # A 5xx at RCPT or DATA is a hard bounce: the address is sent nothing more.
        store.mark_failed(row_id, str(exc), now=tick())
        store.suppress(email, "bounced", str(exc), now=tick())
        store.record_bounce(email, "hard", str(exc), digest=period_key, now=tick())
        shared.record("failed", f"{email}: failed: {exc} (address suppressed)")
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


def _send_batch(
    store: Store,
    backend: BatchBackend,
    shared: _Shared,
    ready: list[tuple[Item, Message]],
    tick: Callable[[], datetime],
    period_key: str,
) -> None:
    """Claim every row of a batch, hand the batch over, and record each message's outcome.

    Every row is claimed (``sending``) before the request goes: a sender killed
    during the request leaves them uncertain, never pending, since the provider
    may have taken them all.
    """
    claimed: list[tuple[Item, Message]] = []
    for item, message in ready:
        try:
            store.mark_sending(item.row_id, now=tick())
        except StoreError:
            shared.record("skipped")  # another process claimed it first
            continue
        claimed.append((item, message))
    if not claimed:
        return
    stopped = ""
    try:
        outcomes = backend.send_batch([message for _, message in claimed])
    except BatchStopped as exc:
        outcomes, stopped = exc.outcomes, str(exc)
    for (item, _), outcome in zip(claimed, outcomes, strict=True):
        _record(store, shared, item.row_id, item.subscriber.email, outcome, tick, period_key)
    if stopped:
        shared.halt(stopped)


def _record(
    store: Store,
    shared: _Shared,
    row_id: int,
    email: str,
    outcome: Outcome,
    tick: Callable[[], datetime],
    period_key: str,
) -> None:
    """One message of a batch: its outcome into the ledger and the report."""
    if outcome.status == "sent":
        store.mark_sent(row_id, now=tick(), provider_id=outcome.provider_id)
        shared.record("sent")
    elif outcome.status == "failed":
        store.mark_failed(row_id, outcome.error, now=tick())
        if outcome.gone:
            # The provider will not deliver to it again: neither will we.
            store.suppress(email, "bounced", outcome.error, now=tick())
            store.record_bounce(email, "hard", outcome.error, digest=period_key, now=tick())
            shared.record("failed", f"{email}: failed: {outcome.error} (address suppressed)")
        else:
            shared.record("failed", f"{email}: failed: {outcome.error}")
    elif outcome.status == "retry":
        store.mark_pending(row_id, outcome.error, now=tick())
        shared.record("failed", f"{email}: failed for now (will retry): {outcome.error}")
    else:
        # Left in "sending": it may have arrived, so only an operator may resend it.
        shared.record("uncertain", f"{email}: uncertain: {outcome.error}")

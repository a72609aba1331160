"""What the web app does to the subscriber list: subscribe, confirm, unsubscribe, choose.

Subscribing is double opt-in: a new address is stored as ``pending`` and sent
a confirmation link; only the click on that page's button makes it
``active``. Asking again for an address already on the list must not tell the
asker anything, so the web request only checks the form and queues the work
(:meth:`Subscriptions.request`); the response is the same, and takes the same
time, whoever the address belongs to. The queued work then decides with
:func:`plan_request` (pure) and writes through the :class:`~publisher.store.Store`.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from email.message import EmailMessage

import jinja2

from publisher.config import Config
from publisher.errors import PublisherError, StoreError
from publisher.mail.tokens import make_token
from publisher.store import Store, Subscriber
from publisher.web.confirmation import confirmation_message

__all__ = ["LOGGER_NAME", "Jobs", "Step", "Subscriptions", "plan_request"]

LOGGER_NAME = "publisher.web"
log = logging.getLogger(LOGGER_NAME)


class Step(enum.Enum):
    """What a subscribe request leads to."""

    CREATE = "create"  # a new address: add it as pending, send a confirmation
    RESEND = "resend"  # pending, and the last confirmation is old enough: send another
    RESTART = "restart"  # unsubscribed earlier: pending again, send a confirmation
    NOTHING = "nothing"  # active, or pending with a confirmation sent recently


def plan_request(
    existing: Subscriber | None,
    *,
    now: datetime,
    last_sent: datetime | None,
    resend_after: timedelta,
) -> Step:
    """Decide what to do when someone asks to subscribe ``existing`` (None: not on the list).

    A pending address is sent another confirmation only ``resend_after`` after
    the last one (or after it was added), so the form cannot flood a mailbox.
    An active address is left alone: its owner already receives the digest.
    """
    if existing is None:
        return Step.CREATE
    if existing.status in ("active", "bounced", "complained"):
        # A suppressed address is mailed nothing, a confirmation included.
        return Step.NOTHING
    if existing.status == "unsubscribed":
        return Step.RESTART
    last = max(existing.updated_at, last_sent) if last_sent else existing.updated_at
    return Step.RESEND if now - last >= resend_after else Step.NOTHING


class Jobs:
    """One worker thread running queued jobs in order; a failed job is logged, not fatal."""

    def __init__(self, limit: int = 1000) -> None:
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=limit)
        self._thread = threading.Thread(target=self._work, name="publisher-web-jobs", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def submit(self, job: Callable[[], object]) -> bool:
        """Queue ``job``; False when the queue is full (the caller answers 503)."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs (for up to ``timeout`` seconds), then end the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # one bad job must not stop the others
                log.exception("background job failed")


class Subscriptions:
    """The subscriber changes the web pages make, on one store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        secret: bytes,
        clock: Callable[[], datetime],
        send: Callable[[EmailMessage], None],
        env: jinja2.Environment,
    ) -> None:
        self.config = config
        self.store = store
        self.secret = secret
        self.clock = clock
        self.send = send
        self.env = env
        self.base_url = (config.server.base_url or config.site.url).rstrip("/")
        self._last_sent: dict[int, datetime] = {}

    def link(self, purpose: str, subscriber_id: int) -> str:
        """The absolute link for ``purpose`` ("confirm", "unsubscribe", "preferences")."""
        return f"{self.base_url}/{purpose}/{make_token(self.secret, subscriber_id, purpose)}"

    # --- subscribe (runs in the background) ------------------------------------------------

    def request(self, email: str, name: str, categories: Iterable[str]) -> Step:
        """Act on a subscribe form that passed its checks; returns what was done."""
        now = self.clock()
        existing = self.store.get_subscriber(email)
        step = plan_request(
            existing,
            now=now,
            last_sent=self._last_sent.get(existing.id) if existing else None,
            resend_after=self.config.server.confirm_resend,
        )
        if step is Step.CREATE and self.store.suppression(email) is not None:
            # Removed from the list, still suppressed: the form answers the same.
            return Step.NOTHING
        if step is Step.CREATE:
            try:
                subscriber = self.store.add_subscriber(
                    email, name=name, categories=categories, status="pending", now=now
                )
            except StoreError:
                if self.store.get_subscriber(email) is None:
                    raise  # not a race: the address or name was refused
                # Added by another process since the lookup: treat it as known.
                return Step.NOTHING
        elif step is Step.RESTART and existing is not None:
            self.store.set_categories(existing.id, categories, now=now)
            subscriber = self.store.set_status(existing.id, "pending", now=now)
        elif step is Step.RESEND and existing is not None:
            subscriber = existing
        else:
            return Step.NOTHING
        message = confirmation_message(
            self.config,
            self.env,
            email=subscriber.email,
            name=subscriber.name,
            confirm_url=self.link("confirm", subscriber.id),
            now=now,
        )
        self._last_sent[subscriber.id] = now
        try:
            self.send(message)
        except PublisherError as exc:
            log.error("confirmation to subscriber %d not sent: %s", subscriber.id, exc)
        return step

    # --- link actions (run while the request waits) ----------------------------------------

    def confirm(self, subscriber_id: int) -> Subscriber | None:
        """Make the subscriber active (a click on the confirmation page); None if gone."""
        return self._set_status(subscriber_id, "active")

    def unsubscribe(self, subscriber_id: int) -> Subscriber | None:
        """Stop every digest to the subscriber; harmless when already done; None if gone."""
        return self._set_status(subscriber_id, "unsubscribed")

    def save_preferences(
        self, subscriber_id: int, categories: Iterable[str], *, resume: bool
    ) -> Subscriber | None:
        """Set the followed categories (empty: all); ``resume`` makes the subscriber active."""
        if self.store.get_subscriber_by_id(subscriber_id) is None:
            return None
        now = self.clock()
        subscriber = self.store.set_categories(subscriber_id, categories, now=now)
        if resume and subscriber.status != "active":
            subscriber = self.store.set_status(subscriber_id, "active", now=now)
        return subscriber

    def get(self, subscriber_id: int) -> Subscriber | None:
        """The subscriber a valid link names, or None if they were removed since."""
        return self.store.get_subscriber_by_id(subscriber_id)

    def _set_status(self, subscriber_id: int, status: str) -> Subscriber | None:
        subscriber = self.store.get_subscriber_by_id(subscriber_id)
        if subscriber is None or subscriber.status == status:
            return subscriber  # doing it twice is harmless and changes nothing
        return self.store.set_status(subscriber_id, status, now=self.clock())

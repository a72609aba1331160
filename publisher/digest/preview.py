"""``publisher digest preview``: one subscriber's digest, rendered and never sent.

Reads the site (through the build's cache) and, when given an address, that
subscriber and what they have already received from the store. Never writes
to the store, never writes a file and never uses a backend: its links carry
a fake token, so nothing it shows can unsubscribe anyone.

:func:`trial_message` makes a preview into the message of a test send
(``publisher digest send --to``): the same digest, to another address, marked
``[test]`` in its subject, its links as fake as the preview's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import make_msgid

from publisher.build.reader import SiteReader
from publisher.config import Config
from publisher.digest.filling import RenderedDigest
from publisher.digest.message import MessageBuilder
from publisher.digest.period import Period, period_at, period_key
from publisher.digest.plan import plan_selections
from publisher.digest.render import DigestRenderer, recipient_for
from publisher.digest.views import post_views
from publisher.digest.webcopy import web_copy_url
from publisher.errors import PublisherError
from publisher.mail.headers import check_header, mail_host
from publisher.mail.prepared import PreparedMessage
from publisher.store import Store, Subscriber

__all__ = ["Preview", "preview_digest", "trial_message"]


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


def trial_message(config: Config, shown: Preview, to: str, now: datetime) -> PreparedMessage:
    """The test-send message of ``shown``: to ``to``, subject marked ``[test]``.

    Its Message-ID is new each time, so a repeated test send is a new message;
    its links carry the preview's fake token, so the tester cannot unsubscribe
    the reader it was rendered for.
    """
    assert shown.rendered is not None, "a preview with nothing new has no message"
    content = replace(shown.rendered, subject=f"[test] {shown.rendered.subject}")
    recipient = recipient_for(config, 0, to, "", None)
    message_id = make_msgid("test", domain=mail_host(config))
    return MessageBuilder(config).prepare(
        recipient=recipient, content=content, message_id=message_id, now=now
    )

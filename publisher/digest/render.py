"""Digest bodies: subject, HTML and text from Jinja2 templates, fast enough for big lists.

Rendering ten thousand digests must take seconds, not minutes, so the work is
split by what it depends on:

* once per run: templates are compiled and every post's excerpt, URL and
  localised date are prepared (:func:`post_views`);
* once per distinct digest: subscribers following the same categories with
  the same new posts get the same message apart from their name, address and
  links, so each distinct selection is rendered once, with unguessable slot
  markers where those values go, and its CSS is inlined once;
* once per subscriber: the slots are filled in. :meth:`DigestRenderer.prepare`
  hands out the template and the values instead, so that the message builder
  can also do its own work once per distinct digest and fill in bytes.

Filling in gives what rendering for that reader would give only if the
templates never look inside the values, so a reader is rendered the slow way,
in full, whenever that is not known to hold:

* for everyone, when the templates use a value other than by printing it as it
  is, passing it to ``str.format`` or testing whether it is empty: a site's own
  template that writes ``subscriber.name|upper`` or
  ``{% if subscriber.email.endswith(...) %}``. That is decided once per renderer
  from the templates' syntax trees (:mod:`publisher.digest.slots`); empty and
  non-empty values are rendered apart, as tests on them may branch;
* for everyone who gets a distinct digest, when that digest filled in with
  made-up values differs from that digest rendered with them: for example a
  name inside an HTML attribute, where the inlined HTML escapes quotes
  differently from text. Each distinct digest is checked once, before anyone
  gets it;
* for one reader, when their values hold what the fill-in does not reproduce
  in every place: a control character (line breaks included), quotes, ``<``,
  ``>`` or a no-break space in an address or link, or, when the subject shows a
  value, blanks at the ends of one (the subject is trimmed).

Reads the site's templates once, when a renderer is built, and is CPU only
after that: it never touches the store or the backend and writes no file (the
web copy is written by :mod:`publisher.digest.webcopy`). What templates see of
posts comes from :mod:`publisher.digest.views`; cutting at the slots and
filling them in is :mod:`publisher.digest.filling`.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import css_inline
import jinja2
from babel.dates import format_date

from publisher.config import Config
from publisher.digest.filling import DigestTemplate, Filling, Recipient, RenderedDigest, one_line
from publisher.digest.period import Period
from publisher.digest.select import Selection
from publisher.digest.slots import SLOT_NAMES, SlotUse, analyse
from publisher.digest.views import GroupView, PostView, labels_for, locale_for
from publisher.errors import ConfigError
from publisher.mail.names import clean_name
from publisher.mail.tokens import make_token
from publisher.site.markup import cut_text
from publisher.site.templating import environment, template_error

__all__ = [
    "HTML_TEMPLATE",
    "PREVIEW_TOKEN",
    "TEXT_TEMPLATE",
    "DigestRenderer",
    "recipient_for",
]

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
# What preview links carry instead of a signed token: obviously not a real one.
PREVIEW_TOKEN = "PREVIEW-not-a-real-token"
_CACHE_SIZE = 512
# Bytes of HTML kept free for what differs between readers (a name, an address
# and two personal links, each shown a few times), so that the decision made
# once with placeholders holds for every reader's real values.
_READER_ROOM = 2_000
# A value with a control character is never filled in: parsing HTML changes some
# (CR becomes LF, NUL goes). Values go into the HTML as filling._html_text writes them,
# which is what the inliner writes in text, checked for each digest with _PROBE;
# an address or a link may be in an attribute too, where quotes, "<" and ">" are
# written otherwise, so one that holds them or a no-break space is not filled in.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_ANYWHERE = re.compile("[\"'<>\u00a0]")
# Made-up values that each distinct digest is checked with before it is filled
# in: a space (an unquoted attribute), an ampersand and what follows one in a
# character reference (after an "&" in the template), quotes, markup, a
# no-break space and Japanese.
_PROBE = {
    "name": 'lt;Probe &amp O\'Brien "Q" <b>x</b>\u00a0a=b/#1;-山田',
    "email": "lt;probe&amp x=1/#2;-山@example.invalid",
    "unsubscribe": "lt;https://probe.invalid/u?a=1&amp b#2;-山",
    "preferences": "lt;https://probe.invalid/p?a=1&amp b#3;-山",
}


def recipient_for(
    config: Config, subscriber_id: int, email: str, name: str, secret: bytes | None
) -> Recipient:
    """A subscriber's links, signed with ``secret``; ``None`` gives fake preview links.

    The name is cleaned as the To header cleans it (a row stored before names
    were cleaned may hold control characters), so greeting and header agree.
    """
    base = (config.server.base_url or config.site.url).rstrip("/")
    if secret is None:
        unsubscribe = preferences = PREVIEW_TOKEN
    else:
        unsubscribe = make_token(secret, subscriber_id, "unsubscribe")
        preferences = make_token(secret, subscriber_id, "preferences")
    return Recipient(
        email=email,
        name=clean_name(name),
        unsubscribe_url=f"{base}/unsubscribe/{unsubscribe}",
        preferences_url=f"{base}/preferences/{preferences}",
        unsubscribe_token=unsubscribe,
    )


def _head_order(html: str) -> str:
    """Put the kept media-query <style> back at the end of <head>.

    css-inline writes it first in <head>, which pushes ``<meta charset>`` past
    the first kilobyte a browser inspects when it opens the web copy.
    """
    start = html.find("<head><style>")
    end = html.find("</style>", start)
    close = html.find("</head>", end)
    if start < 0 or end < 0 or close < 0:
        return html
    start += len("<head>")
    end += len("</style>")
    return html[:start] + html[end:close] + html[start:end] + "\n" + html[close:]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One distinct digest; made whole before sender threads can see it."""

    template: DigestTemplate
    direct: bool  # the fill-in differs from rendering: everyone gets it rendered


class DigestRenderer:
    """Renders every digest of one period; build one per run and reuse it."""

    def __init__(
        self, config: Config, period: Period, views: Mapping[str, PostView], *, web_url: str
    ) -> None:
        self.config = config
        self.period = period
        self.views = views
        self.web_url = web_url
        self.labels = labels_for(config.site.language)
        self._locale = locale_for(config.site.language)
        env = environment(config.paths.templates)
        try:
            self._html = env.get_template(HTML_TEMPLATE)
            self._text = env.get_template(TEXT_TEMPLATE)
        except jinja2.TemplateError as exc:
            raise template_error(exc, HTML_TEMPLATE) from None
        try:
            # A subject is a header, not HTML: "&" must stay "&".
            self._subject = env.overlay(autoescape=False).from_string(config.digest.subject)
        except jinja2.TemplateError as exc:
            raise ConfigError(
                [f"digest.subject: {getattr(exc, 'message', None) or exc}"],
                str(config.source or "config.yaml"),
            ) from None
        self._inliner = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)
        # Whether the templates only print the reader's values, decided once:
        # if not, everyone is rendered in full.
        self.slot_use: SlotUse = analyse(
            env, config.digest.subject, {HTML_TEMPLATE: True, TEXT_TEMPLATE: False}, self.labels
        )
        nonce = secrets.token_hex(8)
        self._slots = {name: f"PUBLISHER-SLOT-{nonce}-{name}" for name in SLOT_NAMES}
        self._slot_re = re.compile(f"PUBLISHER-SLOT-{nonce}-({'|'.join(SLOT_NAMES)})")
        # The same budget for the shared template (made with placeholder values) and
        # for a reader rendered whole, so both decide alike for any real values.
        self._html_budget = max(0, config.digest.max_html_bytes - _READER_ROOM)
        self._cache: OrderedDict[Any, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # sender threads share the cache
        self.stats = {"distinct": 0, "direct": 0, "filled": 0}

    # --- context ---------------------------------------------------------------------------

    def _groups(self, selection: Selection, brief: bool) -> list[GroupView]:
        def view(post_id: str) -> PostView:
            shown = self.views[post_id]
            return replace(shown, excerpt="") if brief else shown

        return [
            GroupView(
                group.name,
                group.name or self.labels["uncategorised"],
                tuple(view(post.id) for post in group.posts),
            )
            for group in selection.groups
        ]

    def _context(
        self, selection: Selection, values: Mapping[str, str], *, web_copy: bool, brief: bool
    ) -> dict[str, Any]:
        groups = self._groups(selection, brief)
        posts = [post for group in groups for post in group.posts]
        count = len(posts)
        date = format_date(
            self.period.due.astimezone(self.config.site.timezone),
            format="long",
            locale=self._locale,
        )
        summary = self.labels["summary_one" if count == 1 else "summary_other"].format(
            count=count, date=date
        )
        return {
            "site": self.config.site,
            "digest": {
                "key": self.period.key,
                "due": self.period.due,
                "date": date,
                "count": count,
                "summary": summary,
                "web_url": self.web_url,
                "brief": brief,  # titles and links only: the whole would be clipped
            },
            "groups": groups,
            "posts": posts,
            "subscriber": {"name": values["name"], "email": values["email"]},
            "links": {
                "site": self.config.site.url + "/",
                "web": self.web_url,
                "unsubscribe": values["unsubscribe"],
                "preferences": values["preferences"],
            },
            "labels": self.labels,
            "preheader": cut_text(" · ".join(p.title for p in posts), 140),
            "web_copy": web_copy,
        }

    def _render(
        self, selection: Selection, values: Mapping[str, str], *, web_copy: bool = False
    ) -> RenderedDigest:
        """The slow path: render the templates with these exact values.

        A message whose HTML would pass ``digest.max_html_bytes`` (less room
        for a reader's own name and links) is rendered again with titles and
        links only: Gmail clips a larger one and hides its unsubscribe footer.
        """
        rendered = self._render_as(selection, values, web_copy=web_copy, brief=False)
        if not web_copy and len(rendered.html.encode("utf-8")) > self._html_budget:
            rendered = self._render_as(selection, values, web_copy=web_copy, brief=True)
        return rendered

    def _render_as(
        self, selection: Selection, values: Mapping[str, str], *, web_copy: bool, brief: bool
    ) -> RenderedDigest:
        context = self._context(selection, values, web_copy=web_copy, brief=brief)
        try:
            subject = one_line(self._subject.render(context))
        except jinja2.TemplateError as exc:
            raise ConfigError(
                [f"digest.subject: {getattr(exc, 'message', None) or exc}"],
                str(self.config.source or "config.yaml"),
            ) from None
        try:
            html = self._html.render(context, subject=subject)
        except jinja2.TemplateError as exc:
            raise template_error(exc, HTML_TEMPLATE) from None
        try:
            text = "" if web_copy else self._text.render(context, subject=subject)
        except jinja2.TemplateError as exc:
            raise template_error(exc, TEXT_TEMPLATE) from None
        return RenderedDigest(subject, _head_order(self._inliner.inline(html)), text)

    # --- public ----------------------------------------------------------------------------

    def render(self, selection: Selection, recipient: Recipient) -> RenderedDigest:
        """The digest ``selection`` for ``recipient``."""
        prepared = self.prepare(selection, recipient)
        return prepared.rendered() if isinstance(prepared, Filling) else prepared

    def prepare(self, selection: Selection, recipient: Recipient) -> Filling | RenderedDigest:
        """The digest ``selection`` for ``recipient``, as a template and values when it can.

        A message builder can then do its own work once per template too; a
        digest that cannot be filled in comes back rendered whole.
        """
        values = {
            "name": recipient.name,
            "email": recipient.email,
            "unsubscribe": recipient.unsubscribe_url,
            "preferences": recipient.preferences_url,
        }
        if not (self.slot_use.fillable and self._fits(values)):
            return self._direct(selection, values)
        # Templates may test whether a value is empty: that is part of the key.
        empty = tuple(not values[name] for name in SLOT_NAMES)
        key = (selection.key, empty)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
        if entry is None:
            made = self._entry(selection, empty)
            with self._lock:
                entry = self._cache.get(key)  # another thread may have made it meanwhile
                if entry is None:
                    entry = self._cache[key] = made
                    self.stats["distinct"] += 1
                    if len(self._cache) > _CACHE_SIZE:
                        self._cache.popitem(last=False)
        if entry.direct:
            return self._direct(selection, values)
        with self._lock:
            self.stats["filled"] += 1
        return Filling.of(entry.template, values)

    def _direct(self, selection: Selection, values: Mapping[str, str]) -> RenderedDigest:
        with self._lock:
            self.stats["direct"] += 1
        return self._render(selection, values)

    def _fits(self, values: Mapping[str, str]) -> bool:
        """Whether these values fill in exactly as they would render."""
        for name, value in values.items():
            if _CONTROL.search(value) or (name != "name" and _ANYWHERE.search(value)):
                return False
            if self.slot_use.in_subject and value != value.strip():
                return False
        return True

    def _entry(self, selection: Selection, empty: tuple[bool, ...]) -> _Entry:
        """Render a distinct digest with markers, and check it with made-up values."""

        def values(given: Mapping[str, str]) -> dict[str, str]:
            # An empty value stays empty: templates test it ({% if subscriber.name %}).
            return {
                name: "" if blank else given[name]
                for name, blank in zip(SLOT_NAMES, empty, strict=True)
            }

        shared = self._render(selection, values(self._slots))
        template = DigestTemplate(
            tuple(self._slot_re.split(shared.subject)),
            tuple(self._slot_re.split(shared.html)),
            tuple(self._slot_re.split(shared.text)),
            self._slots,
            self._slot_re,
        )
        probe = values(_PROBE)
        direct = Filling.of(template, probe).rendered() != self._render(selection, probe)
        return _Entry(template, direct)

    def web_copy(self, selection: Selection) -> str:
        """The "view in browser" page: the digest without anyone's name or links."""
        values = dict.fromkeys(SLOT_NAMES, "")
        return self._render(selection, values, web_copy=True).html

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
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import css_inline
import jinja2
from babel import Locale, UnknownLocaleError
from babel.dates import format_date

from publisher.config import Config
from publisher.digest.period import Period
from publisher.digest.select import Selection
from publisher.digest.slots import SLOT_NAMES, SlotUse, analyse
from publisher.errors import ConfigError
from publisher.feeds import post_url
from publisher.mail.names import clean_name
from publisher.mail.tokens import make_token
from publisher.site.markup import cut_text, render
from publisher.site.posts import Post, read_body
from publisher.site.templating import environment, template_error

__all__ = [
    "HTML_TEMPLATE",
    "PREVIEW_TOKEN",
    "TEXT_TEMPLATE",
    "DigestRenderer",
    "DigestTemplate",
    "Filling",
    "GroupView",
    "PostView",
    "Recipient",
    "RenderedDigest",
    "labels_for",
    "locale_for",
    "one_line",
    "post_view",
    "post_views",
    "recipient_for",
]

HTML_TEMPLATE = "digest.html.j2"
TEXT_TEMPLATE = "digest.txt.j2"
# What preview links carry instead of a signed token: obviously not a real one.
PREVIEW_TOKEN = "PREVIEW-not-a-real-token"
_CACHE_SIZE = 512
# A value with a control character is never filled in: parsing HTML changes some
# (CR becomes LF, NUL goes). Values go into the HTML as _html_text writes them,
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

# Words the default templates use, by language; a site's own templates may
# use them or write their own text.
LABELS: dict[str, dict[str, str]] = {
    "en": {
        "view_in_browser": "View in your browser",
        "read_more": "Read more",
        "preferences": "Manage preferences",
        "unsubscribe": "Unsubscribe",
        "uncategorised": "Other posts",
        "greeting_named": "Hello {name},",
        "summary_one": "1 new post · {date}",
        "summary_other": "{count} new posts · {date}",
        "why": "You receive this at {email} because you subscribed to {site}.",
        "web_copy_note": "This is the web copy of an email digest from {site}.",
    },
    "ja": {
        "view_in_browser": "ブラウザで表示",
        "read_more": "続きを読む",
        "preferences": "配信設定の変更",
        "unsubscribe": "配信停止",
        "uncategorised": "その他の記事",
        "greeting_named": "{name} 様",
        "summary_one": "新着記事 1 件 · {date}",
        "summary_other": "新着記事 {count} 件 · {date}",
        "why": "{site} をご購読いただいているため、{email} にお送りしています。",
        "web_copy_note": "{site} のメールダイジェストのウェブ版です。",
    },
}


@dataclass(frozen=True, slots=True)
class PostView:
    """What the templates see of one post; prepared once per run."""

    id: str
    title: str
    url: str  # absolute
    author: str
    date: str  # localised for site.language in site.timezone
    datetime: str  # ISO 8601, for <time datetime>
    excerpt: str  # plain text
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupView:
    """One category heading and its posts."""

    name: str  # "" for uncategorised posts
    label: str  # what the heading says
    posts: tuple[PostView, ...]


@dataclass(frozen=True, slots=True)
class Recipient:
    """The per-subscriber values of a message."""

    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str
    unsubscribe_token: str


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """A rendered digest, ready to become a message."""

    subject: str
    html: str
    text: str


def locale_for(language: str) -> Locale:
    """The Babel locale for ``site.language`` ("ja", "en-US", "pt_BR"); English if unknown."""
    try:
        return Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse("en")


def labels_for(language: str) -> dict[str, str]:
    """The default templates' words in ``site.language``, falling back to English."""
    base = language.replace("_", "-").split("-")[0].lower()
    return {**LABELS["en"], **LABELS.get(base, {})}


def post_view(config: Config, post: Post, excerpt: str, locale: Locale) -> PostView:
    """A post as the templates see it, with its date formatted for the site."""
    local = post.date.astimezone(config.site.timezone)
    return PostView(
        id=post.id,
        title=post.title,
        url=post_url(config, post),
        author=post.author or config.site.author,
        date=format_date(local, format="medium", locale=locale),
        datetime=local.isoformat(),
        excerpt=excerpt,
        categories=post.categories,
    )


def post_views(
    config: Config, posts: Iterable[Post], read: Callable[[Post], bytes] | None = None
) -> dict[str, PostView]:
    """Prepare each post once: its excerpt is rendered from the Markdown body.

    ``read`` returns a post file's bytes (by default from the site folder); a
    post whose file cannot be read keeps its front-matter excerpt, if any.
    """

    def read_file(post: Post) -> bytes:
        return (config.paths.root / post.source).read_bytes()

    read = read or read_file
    locale = locale_for(config.site.language)
    views: dict[str, PostView] = {}
    for post in posts:
        if post.id in views:
            continue
        try:
            body = read_body(read(post))
        except OSError:
            excerpt = post.excerpt
        else:
            excerpt = render(
                body,
                post_url(config, post),
                excerpt=post.excerpt,
                excerpt_length=config.feeds.excerpt_length,
            ).summary
        views[post.id] = post_view(config, post, excerpt, locale)
    return views


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


@dataclass(frozen=True, eq=False)
class DigestTemplate:
    """One distinct digest with holes where each reader's values go.

    Each text is cut at its slots: literals at even indexes, slot names
    (``name``, ``email``, ``unsubscribe``, ``preferences``) at odd ones. The
    HTML takes values escaped as the inlined HTML writes text (see :meth:`Filling.of`),
    the subject and text the values as they are.
    Compared by identity: a message builder may keep work of its own per template.
    """

    subject: tuple[str, ...]
    html: tuple[str, ...]
    text: tuple[str, ...]
    marks: Mapping[str, str]  # slot name -> the unguessable marker it was rendered as
    marker: re.Pattern[str]  # finds the markers; its one group is the slot name

    def marked(self, pieces: tuple[str, ...]) -> str:
        """``pieces`` joined again with a marker in each slot (see :meth:`cut`)."""
        out = list(pieces)
        for i in range(1, len(out), 2):
            out[i] = self.marks[out[i]]
        return "".join(out)

    def cut(self, text: str) -> tuple[str, ...]:
        """A marked text cut at its markers, as the fields are: a transformation of
        :meth:`marked` text that leaves the markers alone can be cut again."""
        return tuple(self.marker.split(text))

    def subject_for(self, filling: Filling) -> str:
        """The subject for one reader."""
        return one_line(_fill(self.subject, filling.values))

    def fill(self, filling: Filling) -> RenderedDigest:
        """The digest for one reader."""
        return RenderedDigest(
            one_line(_fill(self.subject, filling.values)),
            _fill(self.html, filling.html_values),
            _fill(self.text, filling.values),
        )


def _fill(pieces: tuple[str, ...], values: Mapping[str, str]) -> str:
    out = list(pieces)
    for i in range(1, len(out), 2):
        out[i] = values[out[i]]
    return "".join(out)


# What str.splitlines() breaks lines at, with the blanks around it.
_LINE_BREAK = re.compile(r"\s*[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+\s*")


def one_line(subject: str) -> str:
    """A rendered subject on one line: each line break (a post title written as a
    YAML block, say) and the blanks around it become one space, and the ends are trimmed."""
    return _LINE_BREAK.sub(" ", subject).strip()


def _html_text(value: str) -> str:
    """``value`` as text in HTML, escaped as the CSS inliner writes it out.

    Quotes stay as they are: the inliner parses the rendered HTML and writes it
    out again, so a name that Jinja2 wrote as ``O&#39;Brien`` comes out as
    ``O'Brien``. (Each distinct digest is checked with a made-up value before
    it is filled in, so a different writer would only make it slower.)
    """
    return (
        value.replace("&", "&amp;")
        .replace("\u00a0", "&nbsp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
    )


@dataclass(frozen=True)
class Filling:
    """A reader's digest as a template and the values that fill it."""

    template: DigestTemplate
    values: Mapping[str, str]  # slot name -> value, as the subject and text take it
    html_values: Mapping[str, str]  # the same, as the HTML takes it (_html_text)

    @classmethod
    def of(cls, template: DigestTemplate, values: Mapping[str, str]) -> Filling:
        """``template`` filled with ``values``."""
        return cls(template, values, {name: _html_text(value) for name, value in values.items()})

    def rendered(self) -> RenderedDigest:
        """The filled-in subject, HTML and text."""
        return self.template.fill(self)


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
        self._cache: OrderedDict[Any, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # sender threads share the cache
        self.stats = {"distinct": 0, "direct": 0, "filled": 0}

    # --- context ---------------------------------------------------------------------------

    def _groups(self, selection: Selection) -> list[GroupView]:
        return [
            GroupView(
                group.name,
                group.name or self.labels["uncategorised"],
                tuple(self.views[post.id] for post in group.posts),
            )
            for group in selection.groups
        ]

    def _context(
        self, selection: Selection, values: Mapping[str, str], *, web_copy: bool
    ) -> dict[str, Any]:
        groups = self._groups(selection)
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
        """The slow path: render the templates with these exact values."""
        context = self._context(selection, values, web_copy=web_copy)
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

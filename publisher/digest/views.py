"""What the digest templates see of posts: prepared once per run, shared by every reader.

A post becomes a :class:`PostView` (title, absolute URL, author, date localised
for ``site.language`` in ``site.timezone``, plain-text excerpt, reading time in
minutes); the default templates' words come from :data:`LABELS`.

Never renders a template, never touches the store or the network: the only I/O
is reading post bodies through the ``read`` that :func:`post_views` is given
(by default, the post's file in the site folder).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from babel import Locale, UnknownLocaleError
from babel.dates import format_date

from publisher.config import Config
from publisher.feeds import post_url
from publisher.site.markup import reading_time, render
from publisher.site.posts import Post, read_body

__all__ = [
    "LABELS",
    "GroupView",
    "PostView",
    "labels_for",
    "locale_for",
    "post_view",
    "post_views",
]

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
    reading_time: int  # minutes: the front matter's, or worked out from the body


@dataclass(frozen=True, slots=True)
class GroupView:
    """One category heading and its posts."""

    name: str  # "" for uncategorised posts
    label: str  # what the heading says
    posts: tuple[PostView, ...]


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


def post_view(
    config: Config, post: Post, excerpt: str, locale: Locale, minutes: int = 0
) -> PostView:
    """A post as the templates see it, with its date formatted for the site.

    ``minutes`` is its reading time; 0 takes the front matter's, or 1.
    """
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
        reading_time=minutes or post.reading_time or 1,
    )


def post_views(
    config: Config, posts: Iterable[Post], read: Callable[[Post], bytes] | None = None
) -> dict[str, PostView]:
    """Prepare each post once: its excerpt and reading time come from the Markdown body.

    ``read`` returns a post file's bytes (by default from the site folder); a
    post whose file cannot be read keeps its front-matter excerpt, if any, and
    reading time, or 1 minute.
    """

    def read_file(post: Post) -> bytes:
        return (config.paths.root / post.source).read_bytes()

    read = read or read_file
    locale = locale_for(config.site.language)
    views: dict[str, PostView] = {}
    for post in posts:
        if post.id in views:
            continue
        minutes = 0
        try:
            body = read_body(read(post))
        except OSError:
            excerpt = post.excerpt
        else:
            rendered = render(
                body,
                post_url(config, post),
                excerpt=post.excerpt,
                excerpt_length=config.feeds.excerpt_length,
            )
            excerpt = rendered.summary
            minutes = reading_time(rendered, config.feeds, post.reading_time)
        views[post.id] = post_view(config, post, excerpt, locale, minutes)
    return views

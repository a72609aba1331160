"""The commented ``config.yaml`` that ``publisher init`` writes, and the site's ``.gitignore``.

Every key that :mod:`publisher.config.load` reads is shown with its default, commented
out, under a one-line note of what it does, so a new site's config doubles as its
reference. Only the keys ``publisher init`` was given are written as values.

A commented key is its line with ``#`` in front (``#  max_items: 20``, ``#permalink: ...``;
a section whose keys are all commented has its own line commented too, ``#feeds:``),
and notes are ``# ...`` with one space; so removing the ``#`` of a key line (and of its
section's line) gives a file that loads to the same settings: the tests prove the shown
defaults true that way. An empty value is YAML's null, which reads as the default:
"none", or the value derived from another key (``digest.from`` from ``site.email``).

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from publisher.config.model import StoreConfig
from publisher.config.yamlsafe import scalar

__all__ = ["PATH_DEFAULTS", "SECTIONS", "Setting", "config_text", "gitignore_text"]

#: ``paths.*`` as :func:`publisher.config.load.parse_config` defaults them.
PATH_DEFAULTS = {
    "posts": "posts",
    "output": "public",
    "templates": "templates",
    "outbox": "outbox",
    "cache": ".publisher-cache",
    "state": ".publisher",
}


@dataclass(frozen=True)
class Setting:
    """One key of a section: its default as YAML text ("" for none) and what it does."""

    key: str
    default: str
    meaning: str


# (section, what it is for, its keys); section "" holds top-level keys. The order and the
# words follow README.md's tables, "Configuration" and "Digests".
SECTIONS: tuple[tuple[str, str, tuple[Setting, ...]], ...] = (
    (
        "site",
        "Who publishes: the head of every feed and email.",
        (
            Setting("title", "", "feed and email title (required)"),
            Setting("url", "", "absolute base URL where paths.output is served (required)"),
            Setting("description", '""', "feed subtitle"),
            Setting("language", "en", "feed language; also the locale of digest dates"),
            Setting("author", '""', "default author of entries"),
            Setting("email", '""', "feed author email; default digest sender"),
            Setting(
                "timezone",
                "UTC",
                "IANA name; dates without an offset, and dates shown in feeds and emails",
            ),
        ),
    ),
    (
        "paths",
        "Where things are read and written, relative to this file's folder.",
        (
            Setting("posts", PATH_DEFAULTS["posts"], "where posts are read"),
            Setting("output", PATH_DEFAULTS["output"], "where feeds are written"),
            Setting(
                "templates",
                PATH_DEFAULTS["templates"],
                "your templates; a file here overrides the built-in one of the same name",
            ),
            Setting(
                "outbox", PATH_DEFAULTS["outbox"], "where the outbox backend writes .eml files"
            ),
            Setting("cache", PATH_DEFAULTS["cache"], "build cache (safe to delete)"),
            Setting("state", PATH_DEFAULTS["state"], "lock, status file, WebSub queue"),
        ),
    ),
    (
        "feeds",
        "Which feeds are built and what their entries carry.",
        (
            Setting("formats", "[atom, rss, json]", "which formats to write"),
            Setting("max_items", "20", "entries per current feed"),
            Setting("content", "full", "full (HTML content and summary) or summary"),
            Setting("per_category", "true", "a feed set per category"),
            Setting("per_tag", "false", "a feed set per tag"),
            Setting(
                "category_slugs",
                "{}",
                "name -> folder, e.g. {AI技術: ai-tech}; otherwise the name, slugged",
            ),
            Setting("tag_slugs", "{}", "likewise for tags"),
            Setting("excerpt_length", "200", "characters of an automatic summary"),
            Setting(
                "image_from_content",
                "false",
                "a post without an image takes the first image of its body",
            ),
            Setting("reading_words_per_minute", "200", "reading speed of space-separated text"),
            Setting(
                "reading_chars_per_minute",
                "500",
                "reading speed of Chinese, Japanese and Korean text, by the character",
            ),
            Setting("archive", "true", "every feed's whole history in RFC 5005 archive pages"),
            Setting("archive_page_size", "50", "posts per archive page, from the oldest"),
            Setting("archive_content", "summary", "what archive entries carry: summary or full"),
            Setting(
                "websub_hubs", "[]", "WebSub hubs every feed advertises and pings when it changes"
            ),
        ),
    ),
    (
        "",
        "Each post's URL, with Jekyll's placeholders (:year :month :day :title :slug ...).",
        (Setting("permalink", "/:categories/:year/:month/:day/:title.html", ""),),
    ),
    (
        "digest",
        "The email digest: when it goes out, what it says and how it is sent.",
        (
            Setting("schedule", '"0 8 * * mon"', "cron expression (5 fields) in site.timezone"),
            Setting("first_window", "7d", "how far back a subscriber's first digest reaches"),
            Setting(
                "max_lateness", "24h", "a period missed by more than this is skipped, not sent late"
            ),
            Setting("subject", '"{{ site.title }}: {{ digest.summary }}"', "Jinja2"),
            Setting("from", "", "sender address (empty: site.email)"),
            Setting("reply_to", "", "Reply-To address (empty: none)"),
            Setting("backend", "outbox", "outbox, smtp or postmark"),
            Setting("list_id", "", "the List-ID header (empty: derived from site.url)"),
            Setting("unsubscribe_mailto", "", "a mailto address in List-Unsubscribe (empty: none)"),
            Setting(
                "bounce_address",
                "",
                "with bounces@example.com, each message's return path names it (VERP)",
            ),
            Setting(
                "max_html_bytes",
                "95000",
                "past this, a digest is sent with titles and links only (Gmail clips at 102 KB)",
            ),
            Setting(
                "claim_batch",
                "100",
                "several senders on PostgreSQL: rows a sender claims at a time",
            ),
            Setting("lease", "30s", "how long a sender's claim holds without being renewed"),
        ),
    ),
    (
        "smtp",
        "The smtp backend (digest.backend: smtp); credentials come from the environment.",
        (
            Setting("host", "localhost", "the SMTP server"),
            Setting("port", "587", "its port"),
            Setting("security", "starttls", "starttls, tls or none"),
            Setting(
                "username_env",
                "PUBLISHER_SMTP_USERNAME",
                "the environment variable holding the user name",
            ),
            Setting(
                "password_env",
                "PUBLISHER_SMTP_PASSWORD",
                "the environment variable holding the password",
            ),
            Setting("rate_limit", "0", "messages per second, all connections together (0: off)"),
            Setting("max_retries", "3", "retries of a 4xx reply or a dropped connection"),
            Setting("error_threshold", "20", "failures of one run that stop it"),
            Setting("timeout", "30", "seconds to wait for the server (more than 0)"),
            Setting("connections", "2", "parallel SMTP connections (sender threads)"),
        ),
    ),
    (
        "postmark",
        "The postmark backend (digest.backend: postmark): Postmark's batch API.",
        (
            Setting(
                "token_env",
                "PUBLISHER_POSTMARK_TOKEN",
                "the environment variable holding the server token",
            ),
            Setting(
                "url",
                "https://api.postmarkapp.com",
                "the API (https, or http to a loopback address for tests)",
            ),
            Setting("message_stream", "broadcast", "the message stream"),
            Setting("batch_size", "500", "messages per request (1 to 500)"),
            Setting("timeout", "30", "seconds to wait for an answer"),
            Setting("max_retries", "5", "retries of a 429 or 5xx"),
            Setting("rate_limit", "0", "messages per second for the account, all senders (0: off)"),
        ),
    ),
    (
        "webhooks",
        "Providers' bounce webhooks, served by publisher serve.",
        (
            Setting(
                "mailgun_key_env",
                "PUBLISHER_MAILGUN_WEBHOOK_KEY",
                "the environment variable holding Mailgun's signing key (unset: 404)",
            ),
            Setting(
                "postmark_secret_env",
                "PUBLISHER_POSTMARK_WEBHOOK_SECRET",
                "the environment variable holding the Postmark webhook's password (unset: 404)",
            ),
            Setting(
                "ses_topic_arns", "[]", "the SNS topics whose SES notifications /webhooks/ses takes"
            ),
        ),
    ),
    (
        "bounces",
        "When soft bounces suppress an address.",
        (
            Setting("soft_limit", "3", "soft bounces that suppress an address..."),
            Setting("window", "30d", "...within this time since its last delivered message"),
        ),
    ),
    (
        "dkim",
        "DKIM signing of every message publisher builds (off without a selector).",
        (
            Setting("selector", "", "the public key is at <selector>._domainkey.<domain>"),
            Setting("domain", "", "the signing domain (empty: the domain of digest.from)"),
            Setting("key_file", "", "the private key's file; or key_env, exactly one"),
            Setting("key_env", "", "the environment variable holding the private key"),
        ),
    ),
    (
        "store",
        "Where subscribers and the send ledger live.",
        (
            Setting(
                "url",
                StoreConfig.url,
                "SQLAlchemy URL; or postgresql+psycopg://user:password@host/db",
            ),
            Setting(
                "secret_env",
                StoreConfig.secret_env,
                "the environment variable holding the link-signing secret",
            ),
        ),
    ),
    (
        "server",
        "publisher serve: the subscribe, confirm and unsubscribe pages.",
        (
            Setting(
                "base_url",
                "",
                "public address of these pages, in every email link (empty: site.url)",
            ),
            Setting("host", "127.0.0.1", "where publisher serve listens"),
            Setting("port", "8000", "its port"),
            Setting("in_run", "false", "serve from publisher run too"),
            Setting(
                "subscribe_rate", "5", "subscribe requests per minute per client address (0: off)"
            ),
            Setting(
                "confirm_resend", "10m", "a pending address gets another confirmation after this"
            ),
            Setting("trusted_proxies", "[]", "addresses allowed to set X-Forwarded-For"),
        ),
    ),
)


def _line(key: str, value: str, indent: str) -> str:
    return f"{indent}{key}: {value}" if value else f"{indent}{key}:"


def config_text(given: Mapping[str, str]) -> str:
    """The commented config, with the values in ``given`` (``"site.title": "My Site"``) set.

    The values are written as YAML strings; the keys must be among :data:`SECTIONS`.
    """
    known = {f"{s}.{k.key}" if s else k.key for s, _, keys in SECTIONS for k in keys}
    unknown = set(given) - known
    if unknown:
        raise ValueError(f"not settings: {', '.join(sorted(unknown))}")
    lines = [
        f"# publisher's settings for {scalar(given.get('site.title', 'this site'))}.",
        "#",
        "# Every setting is shown with its default, commented out. To change one, remove the",
        '# "#" at the start of its line (and of its section\'s line, such as "#feeds:"), then',
        "# edit the value. An empty value means none, or the default named beside it.",
        '# README.md ("Configuration", "Digests") tells more of each.',
    ]
    for section, purpose, keys in SECTIONS:
        lines += ["", f"# {purpose}"]
        indent = "  " if section else ""
        dotted = [f"{section}.{s.key}" if section else s.key for s in keys]
        if section:
            lines.append(f"{section}:" if any(d in given for d in dotted) else f"#{section}:")
        for setting, name in zip(keys, dotted, strict=True):
            if setting.meaning:
                lines.append(f"{indent}# {setting.meaning}")
            if name in given:
                lines.append(_line(setting.key, scalar(given[name]), indent))
            else:
                lines.append("#" + _line(setting.key, setting.default, indent))
    return "\n".join(lines) + "\n"


_SQLITE_FILE = re.compile(r"^sqlite:///([^/].*)$")


def gitignore_text() -> str:
    """A ``.gitignore`` of what publisher writes in a site with the default settings."""
    database = _SQLITE_FILE.match(StoreConfig.url)
    lines = [
        "# What publisher writes: the feeds (paths.output), its cache and state",
        "# (paths.cache, paths.state), the outbox (paths.outbox) and the SQLite store.",
        f"/{PATH_DEFAULTS['output']}/",
        f"/{PATH_DEFAULTS['cache']}/",
        f"/{PATH_DEFAULTS['state']}/",
        f"/{PATH_DEFAULTS['outbox']}/",
    ]
    if database:
        name = database.group(1)
        # SQLite keeps its journal (or its write-ahead log) beside the database.
        lines += [f"/{name}", f"/{name}-journal", f"/{name}-wal", f"/{name}-shm"]
    return "\n".join(lines) + "\n"

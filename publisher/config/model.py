"""The settings, as typed values: what every other module reads.

Plain frozen dataclasses with the documented defaults; :mod:`publisher.config.load`
makes them from ``config.yaml``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = [
    "DEFAULT_PERMALINK",
    "FEED_FORMATS",
    "BouncesConfig",
    "Config",
    "DigestConfig",
    "DkimConfig",
    "FeedsConfig",
    "PathsConfig",
    "ServerConfig",
    "SiteConfig",
    "SmtpConfig",
    "StoreConfig",
    "WebhooksConfig",
]

FEED_FORMATS = ("atom", "rss", "json")
DEFAULT_PERMALINK = "/:categories/:year/:month/:day/:title.html"


@dataclass(frozen=True)
class SiteConfig:
    """Who publishes: used in every feed's head and every email."""

    title: str
    url: str  # absolute base URL without a trailing slash
    description: str = ""
    language: str = "en"
    author: str = ""
    email: str = ""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))


@dataclass(frozen=True)
class PathsConfig:
    """Where things are read and written; all absolute once loaded."""

    root: Path
    posts: Path
    output: Path
    templates: Path
    outbox: Path
    cache: Path
    state: Path


@dataclass(frozen=True)
class FeedsConfig:
    """Which feeds are built and what their entries carry."""

    formats: tuple[str, ...] = FEED_FORMATS
    max_items: int = 20
    content: str = "full"  # "full" or "summary"
    per_category: bool = True
    per_tag: bool = False
    category_slugs: Mapping[str, str] = field(default_factory=dict)
    tag_slugs: Mapping[str, str] = field(default_factory=dict)
    excerpt_length: int = 200
    # A post without an image in its front matter takes the first image of its body.
    image_from_content: bool = False
    # Reading time: words a minute of space-separated scripts, and characters a
    # minute of Chinese, Japanese and Korean text.
    reading_words_per_minute: int = 200
    reading_chars_per_minute: int = 500
    # WebSub hubs every feed advertises and the publisher pings when a feed changes.
    websub_hubs: tuple[str, ...] = ()
    # RFC 5005 archives: every post of a scope in fixed pages, counted from the oldest.
    archive: bool = True
    archive_page_size: int = 50
    archive_content: str = "summary"  # "summary" or "full"


@dataclass(frozen=True)
class DigestConfig:
    """The email digest: when it goes out, what it says and how it is sent."""

    schedule: str = "0 8 * * mon"
    first_window: timedelta = timedelta(days=7)
    max_lateness: timedelta = timedelta(hours=24)
    # Rendered with Jinja2, e.g. "Site: 3 new posts · May 4, 2026" (localised).
    subject: str = "{{ site.title }}: {{ digest.summary }}"
    sender: str = ""
    reply_to: str = ""
    backend: str = "outbox"  # "outbox" or "smtp"
    list_id: str = ""
    unsubscribe_mailto: str = ""
    # Gmail clips a message whose HTML passes about 102 KB, hiding the footer with
    # the unsubscribe link: a larger digest is sent with titles and links only.
    max_html_bytes: int = 95_000
    # With an address, each digest's envelope sender is <local>+<row>-<sig>@<domain>
    # (VERP), so that a bounce names its ledger row.
    bounce_address: str = ""
    # Senders sharing a period (PostgreSQL) take its rows this many at a time, each
    # batch held under a lease that a sender killed mid-batch lets run out.
    claim_batch: int = 100
    lease: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class SmtpConfig:
    """How the smtp backend reaches its server; credentials come from the environment."""

    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # "starttls", "tls" or "none"
    username_env: str = "PUBLISHER_SMTP_USERNAME"
    password_env: str = "PUBLISHER_SMTP_PASSWORD"
    timeout: float = 30.0
    rate_limit: float = 0.0  # messages per second; 0 turns the limit off
    max_retries: int = 3
    error_threshold: int = 20
    # Connections (and sender threads) used at once: one prepares the next message
    # while another waits for the server's reply.
    connections: int = 2


@dataclass(frozen=True)
class PostmarkConfig:
    """How the postmark backend reaches Postmark's batch API; the token is in the environment."""

    token_env: str = "PUBLISHER_POSTMARK_TOKEN"  # the server API token
    url: str = "https://api.postmarkapp.com"
    message_stream: str = "broadcast"  # Postmark's stream for newsletters
    batch_size: int = 500  # messages per request; 500 is Postmark's most
    timeout: float = 30.0
    max_retries: int = 5  # for a 429 or 5xx, with backoff
    # Messages per second for the whole account: every sender of a period shares it.
    rate_limit: float = 0.0


@dataclass(frozen=True)
class BouncesConfig:
    """When soft bounces suppress an address: ``soft_limit`` of them within ``window``."""

    soft_limit: int = 3
    window: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class WebhooksConfig:
    """Where the providers' webhook secrets are: the names of environment variables."""

    mailgun_key_env: str = "PUBLISHER_MAILGUN_WEBHOOK_KEY"
    postmark_secret_env: str = "PUBLISHER_POSTMARK_WEBHOOK_SECRET"
    # The SNS topics whose SES notifications are taken; none: /webhooks/ses answers 404.
    ses_topic_arns: tuple[str, ...] = ()


@dataclass(frozen=True)
class DkimConfig:
    """DKIM signing of every outgoing message; off while ``selector`` is empty.

    The private key is read from ``key_file`` or from the environment variable
    named by ``key_env`` when a backend is made, never kept in the config.
    """

    selector: str = ""
    domain: str = ""  # "" : the domain of the From address (digest.from)
    key_file: Path | None = None
    key_env: str = ""


@dataclass(frozen=True)
class StoreConfig:
    """Where subscribers and the send ledger live (an SQLAlchemy URL)."""

    url: str = "sqlite:///publisher.db"
    secret_env: str = "PUBLISHER_SECRET"


@dataclass(frozen=True)
class ServerConfig:
    """The subscribe/unsubscribe web app and its public address."""

    base_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    in_run: bool = False
    # POST /subscribe requests per minute from one client address; 0 turns the limit off.
    subscribe_rate: int = 5
    # The least time between two confirmation emails to one pending address.
    confirm_resend: timedelta = timedelta(minutes=10)
    # Proxies (IP addresses or networks) whose X-Forwarded-For names the real client.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one site."""

    site: SiteConfig
    paths: PathsConfig
    feeds: FeedsConfig
    permalink: str
    digest: DigestConfig
    smtp: SmtpConfig
    store: StoreConfig
    server: ServerConfig
    source: Path | None = None
    dkim: DkimConfig = DkimConfig()
    bounces: BouncesConfig = BouncesConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    postmark: PostmarkConfig = PostmarkConfig()

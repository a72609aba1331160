"""Typed, validated configuration read from ``config.yaml``.

Every problem names its key (``feeds.max_items: must be a positive integer,
got 'ten'``) and every independent problem is reported in the same run, so a
user fixes the file once instead of once per error. Paths are relative to the
folder that holds the config file. Secrets never live here: the config only
names the environment variables that hold them.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from publisher.errors import ConfigError
from publisher.yamlsafe import SafeLoader

__all__ = [
    "FEED_FORMATS",
    "Config",
    "DigestConfig",
    "FeedsConfig",
    "PathsConfig",
    "ServerConfig",
    "SiteConfig",
    "SmtpConfig",
    "StoreConfig",
    "load_config",
    "parse_config",
]

FEED_FORMATS = ("atom", "rss", "json")
DEFAULT_PERMALINK = "/:categories/:year/:month/:day/:title.html"
T = TypeVar("T")


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


class _Reader:
    """Reads one mapping of the raw config, recording problems under dotted keys."""

    def __init__(self, raw: Any, prefix: str, problems: list[str]) -> None:
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            problems.append(f"{prefix or 'config'}: must be a mapping, got {_show(raw)}")
            raw = {}
        self.raw: dict[Any, Any] = raw

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, default: T, check: Callable[[Any], T], required: bool = False) -> T:
        """Return the checked value of ``name``, or ``default`` after recording a problem."""
        self.seen.add(name)
        if name not in self.raw or self.raw[name] is None:
            if required:
                self.problems.append(f"{self.key(name)}: is required")
            return default
        try:
            return check(self.raw[name])
        except ValueError as exc:
            self.problems.append(f"{self.key(name)}: {exc}, got {_show(self.raw[name])}")
            return default

    def finish(self) -> None:
        for name in self.raw:
            if name not in self.seen:
                self.problems.append(f"{self.key(str(name))}: unknown key")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("must be a string")
    text = str(value)
    if "\r" in text or "\n" in text:
        # Values from here end up in feed heads and email headers.
        raise ValueError("must be one line")
    return text


def _url(value: Any) -> str:
    text = _text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return text.rstrip("/")


def _optional_url(value: Any) -> str:
    return "" if value == "" else _url(value)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive integer")
    return value


def _port(value: Any) -> int:
    port = _positive_int(value)
    if port > 65535:
        raise ValueError("must be a port number (1-65535)")
    return port


def _non_negative_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("must be a number >= 0")
    return float(value)


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError("must be a number of seconds > 0 (0 would wait forever)")
    return float(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return str(value)

    return check


def _formats(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or any(i not in FEED_FORMATS for i in items):
        raise ValueError("must be a list of " + ", ".join(FEED_FORMATS))
    return tuple(dict.fromkeys(items))


def _slug_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of name to slug")
    result: dict[str, str] = {}
    for name, slug in value.items():
        if not isinstance(slug, str) or not slug.strip("/. ") or "/" in slug or "\\" in slug:
            raise ValueError(f"slug for {name!r} must be a single path segment")
        result[str(name)] = slug
    return result


def _timezone(value: Any) -> ZoneInfo:
    try:
        return ZoneInfo(_text(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone name such as Asia/Tokyo") from exc


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _duration(value: Any) -> timedelta:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("must be a duration such as 30m, 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def _networks(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("must be a list of IP addresses or networks")
    for item in items:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network") from exc
    return tuple(str(item) for item in items)


def _permalink(value: Any) -> str:
    text = _text(value)
    if not text.startswith("/"):
        raise ValueError("must start with '/'")
    return text


def _env_name(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
        raise ValueError("must be the name of an environment variable")
    return text


def parse_config(raw: Any, root: Path, source: str = "config.yaml") -> Config:
    """Validate a raw mapping (as loaded from YAML) into a :class:`Config`.

    Raises :class:`ConfigError` listing every problem found.
    """
    problems: list[str] = []
    top = _Reader(raw, "", problems)

    r = _Reader(top.get("site", {}, lambda v: v), "site", problems)
    site = SiteConfig(
        title=r.get("title", "", _text, required=True),
        url=r.get("url", "https://example.invalid", _url, required=True),
        description=r.get("description", "", _text),
        language=r.get("language", "en", _text),
        author=r.get("author", "", _text),
        email=r.get("email", "", _text),
        timezone=r.get("timezone", ZoneInfo("UTC"), _timezone),
    )
    r.finish()

    r = _Reader(top.get("paths", {}, lambda v: v), "paths", problems)

    def path(name: str, default: str) -> Path:
        return (root / r.get(name, default, _text)).resolve()

    paths = PathsConfig(
        root=root.resolve(),
        posts=path("posts", "posts"),
        output=path("output", "public"),
        templates=path("templates", "templates"),
        outbox=path("outbox", "outbox"),
        cache=path("cache", ".publisher-cache"),
        state=path("state", ".publisher"),
    )
    r.finish()
    if (
        paths.output == paths.root
        or paths.output in paths.posts.parents
        or (paths.output == paths.posts)
    ):
        problems.append("paths.output: must be a folder of its own, not the site or posts folder")

    r = _Reader(top.get("feeds", {}, lambda v: v), "feeds", problems)
    feeds = FeedsConfig(
        formats=r.get("formats", FEED_FORMATS, _formats),
        max_items=r.get("max_items", 20, _positive_int),
        content=r.get("content", "full", _choice("full", "summary")),
        per_category=r.get("per_category", True, _bool),
        per_tag=r.get("per_tag", False, _bool),
        category_slugs=r.get("category_slugs", {}, _slug_map),
        tag_slugs=r.get("tag_slugs", {}, _slug_map),
        excerpt_length=r.get("excerpt_length", 200, _positive_int),
    )
    r.finish()

    permalink = top.get("permalink", DEFAULT_PERMALINK, _permalink)

    r = _Reader(top.get("digest", {}, lambda v: v), "digest", problems)
    digest = DigestConfig(
        schedule=r.get("schedule", DigestConfig.schedule, _text),
        first_window=r.get("first_window", DigestConfig.first_window, _duration),
        max_lateness=r.get("max_lateness", DigestConfig.max_lateness, _duration),
        subject=r.get("subject", DigestConfig.subject, _text),
        sender=r.get("from", site.email, _text),
        reply_to=r.get("reply_to", "", _text),
        backend=r.get("backend", "outbox", _choice("outbox", "smtp")),
        list_id=r.get("list_id", "", _text),
        unsubscribe_mailto=r.get("unsubscribe_mailto", "", _text),
    )
    r.finish()

    r = _Reader(top.get("smtp", {}, lambda v: v), "smtp", problems)
    smtp = SmtpConfig(
        host=r.get("host", SmtpConfig.host, _text),
        port=r.get("port", SmtpConfig.port, _port),
        security=r.get("security", SmtpConfig.security, _choice("starttls", "tls", "none")),
        username_env=r.get("username_env", SmtpConfig.username_env, _env_name),
        password_env=r.get("password_env", SmtpConfig.password_env, _env_name),
        timeout=r.get("timeout", SmtpConfig.timeout, _positive_number),
        rate_limit=r.get("rate_limit", SmtpConfig.rate_limit, _non_negative_number),
        max_retries=r.get("max_retries", SmtpConfig.max_retries, _positive_int),
        error_threshold=r.get("error_threshold", SmtpConfig.error_threshold, _positive_int),
        connections=r.get("connections", SmtpConfig.connections, _positive_int),
    )
    r.finish()

    r = _Reader(top.get("store", {}, lambda v: v), "store", problems)
    store_url = r.get("url", StoreConfig.url, _text)
    if store_url.startswith("sqlite:///") and not store_url.startswith("sqlite:////"):
        # A relative SQLite path is relative to the config file, like every other path.
        rel = store_url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            store_url = "sqlite:///" + str((root / rel).resolve())
    store = StoreConfig(
        url=store_url, secret_env=r.get("secret_env", "PUBLISHER_SECRET", _env_name)
    )
    r.finish()

    r = _Reader(top.get("server", {}, lambda v: v), "server", problems)
    server = ServerConfig(
        base_url=r.get("base_url", site.url, _optional_url),
        host=r.get("host", "127.0.0.1", _text),
        port=r.get("port", 8000, _port),
        in_run=r.get("in_run", False, _bool),
        subscribe_rate=r.get("subscribe_rate", ServerConfig.subscribe_rate, _non_negative_int),
        confirm_resend=r.get("confirm_resend", ServerConfig.confirm_resend, _duration),
        trusted_proxies=r.get("trusted_proxies", (), _networks),
    )
    r.finish()
    top.finish()

    config = Config(site, paths, feeds, permalink, digest, smtp, store, server)
    if digest.schedule != DigestConfig.schedule:
        problems.extend(_schedule_problems(config))
    if problems:
        raise ConfigError(problems, source)
    return config


def _schedule_problems(config: Config) -> list[str]:
    """``digest.schedule`` read exactly as the digest and the scheduler will read it.

    Checked here so that ``publisher check`` and a config reload in ``publisher
    run`` refuse a bad crontab line before it is used; imported late because
    APScheduler costs a tenth of a second that most builds do not need.
    """
    from publisher.digest.period import schedule_trigger

    try:
        schedule_trigger(config)
    except ConfigError as exc:
        return exc.problems
    return []


def load_config(path: Path | None = None) -> Config:
    """Read and validate ``path``, or ``config.yaml`` in the current folder."""
    if path is None:
        path = Path("config.yaml")
        if not path.exists():
            raise ConfigError(
                ["not found in the current folder; run from the site folder or pass --config PATH"],
                str(path),
            )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot be read: {exc}"], str(path)) from exc
    try:
        raw = yaml.load(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:{mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}invalid YAML: {problem}"], str(path)) from exc
    config = parse_config(raw, path.parent.absolute(), str(path))
    return Config(
        config.site,
        config.paths,
        config.feeds,
        config.permalink,
        config.digest,
        config.smtp,
        config.store,
        config.server,
        source=path.absolute(),
    )


def secret_from_env(name: str) -> str | None:
    """Return the secret held in environment variable ``name``, if set and non-empty."""
    value = os.environ.get(name, "")
    return value or None

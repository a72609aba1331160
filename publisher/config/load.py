"""Reading ``config.yaml`` into a :class:`~publisher.config.model.Config`.

Every problem names its key (``feeds.max_items: must be a positive integer,
got 'ten'``) and every independent problem is reported in the same run, so a
user fixes the file once instead of once per error. Paths are relative to the
folder that holds the config file. Secrets never live here: the config only
names the environment variables that hold them.

``digest.schedule`` is read here as the digest and the scheduler will read it
(:mod:`publisher.config.crontab`), so nothing here imports a layer above it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from publisher.config import checks
from publisher.config.crontab import schedule_problem
from publisher.config.model import (
    DEFAULT_PERMALINK,
    FEED_FORMATS,
    BouncesConfig,
    Config,
    DigestConfig,
    DkimConfig,
    FeedsConfig,
    PathsConfig,
    PostmarkConfig,
    ServerConfig,
    SiteConfig,
    SmtpConfig,
    StoreConfig,
    WebhooksConfig,
)
from publisher.config.yamlsafe import SafeLoader
from publisher.errors import ConfigError

__all__ = ["find_config", "load_config", "parse_config", "secret_from_env"]


def parse_config(raw: Any, root: Path, source: str = "config.yaml") -> Config:
    """Validate a raw mapping (as loaded from YAML) into a :class:`Config`.

    Raises :class:`ConfigError` listing every problem found.
    """
    problems: list[str] = []
    top = checks.Reader(raw, "", problems)

    r = checks.Reader(top.get("site", {}, lambda v: v), "site", problems)
    site = SiteConfig(
        title=r.get("title", "", checks.text, required=True),
        url=r.get("url", "https://example.invalid", checks.url, required=True),
        description=r.get("description", "", checks.text),
        language=r.get("language", "en", checks.text),
        author=r.get("author", "", checks.text),
        email=r.get("email", "", checks.text),
        timezone=r.get("timezone", ZoneInfo("UTC"), checks.timezone),
    )
    r.finish()

    r = checks.Reader(top.get("paths", {}, lambda v: v), "paths", problems)

    def path(name: str, default: str) -> Path:
        return (root / r.get(name, default, checks.text)).resolve()

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

    r = checks.Reader(top.get("feeds", {}, lambda v: v), "feeds", problems)
    feeds = FeedsConfig(
        formats=r.get("formats", FEED_FORMATS, checks.formats),
        max_items=r.get("max_items", 20, checks.positive_int),
        content=r.get("content", "full", checks.choice("full", "summary")),
        per_category=r.get("per_category", True, checks.boolean),
        per_tag=r.get("per_tag", False, checks.boolean),
        category_slugs=r.get("category_slugs", {}, checks.slug_map),
        tag_slugs=r.get("tag_slugs", {}, checks.slug_map),
        excerpt_length=r.get("excerpt_length", 200, checks.positive_int),
        image_from_content=r.get("image_from_content", False, checks.boolean),
        reading_words_per_minute=r.get(
            "reading_words_per_minute", FeedsConfig.reading_words_per_minute, checks.positive_int
        ),
        reading_chars_per_minute=r.get(
            "reading_chars_per_minute", FeedsConfig.reading_chars_per_minute, checks.positive_int
        ),
        websub_hubs=r.get("websub_hubs", (), checks.url_list),
        archive=r.get("archive", True, checks.boolean),
        archive_page_size=r.get("archive_page_size", 50, checks.positive_int),
        archive_content=r.get("archive_content", "summary", checks.choice("full", "summary")),
    )
    r.finish()

    permalink = top.get("permalink", DEFAULT_PERMALINK, checks.permalink)

    r = checks.Reader(top.get("digest", {}, lambda v: v), "digest", problems)
    digest = DigestConfig(
        schedule=r.get("schedule", DigestConfig.schedule, checks.text),
        first_window=r.get("first_window", DigestConfig.first_window, checks.duration),
        max_lateness=r.get("max_lateness", DigestConfig.max_lateness, checks.duration),
        subject=r.get("subject", DigestConfig.subject, checks.text),
        sender=r.get("from", site.email, checks.text),
        reply_to=r.get("reply_to", "", checks.text),
        backend=r.get("backend", "outbox", checks.choice("outbox", "smtp", "postmark")),
        list_id=r.get("list_id", "", checks.text),
        unsubscribe_mailto=r.get("unsubscribe_mailto", "", checks.text),
        max_html_bytes=r.get("max_html_bytes", DigestConfig.max_html_bytes, checks.positive_int),
        bounce_address=r.get("bounce_address", "", checks.text),
        claim_batch=r.get("claim_batch", DigestConfig.claim_batch, checks.positive_int),
        lease=r.get("lease", DigestConfig.lease, checks.duration),
    )
    r.finish()
    bounce_problem = _bounce_problem(digest.bounce_address)
    if bounce_problem:
        problems.append(f"digest.bounce_address: {bounce_problem}")

    r = checks.Reader(top.get("smtp", {}, lambda v: v), "smtp", problems)
    smtp = SmtpConfig(
        host=r.get("host", SmtpConfig.host, checks.text),
        port=r.get("port", SmtpConfig.port, checks.port),
        security=r.get("security", SmtpConfig.security, checks.choice("starttls", "tls", "none")),
        username_env=r.get("username_env", SmtpConfig.username_env, checks.env_name),
        password_env=r.get("password_env", SmtpConfig.password_env, checks.env_name),
        timeout=r.get("timeout", SmtpConfig.timeout, checks.positive_number),
        rate_limit=r.get("rate_limit", SmtpConfig.rate_limit, checks.non_negative_number),
        max_retries=r.get("max_retries", SmtpConfig.max_retries, checks.positive_int),
        error_threshold=r.get("error_threshold", SmtpConfig.error_threshold, checks.positive_int),
        connections=r.get("connections", SmtpConfig.connections, checks.positive_int),
    )
    r.finish()

    dkim = _dkim(checks.Reader(top.get("dkim", {}, lambda v: v), "dkim", problems), root, problems)

    r = checks.Reader(top.get("postmark", {}, lambda v: v), "postmark", problems)
    postmark = PostmarkConfig(
        token_env=r.get("token_env", PostmarkConfig.token_env, checks.env_name),
        url=r.get("url", PostmarkConfig.url, checks.url),
        message_stream=r.get("message_stream", PostmarkConfig.message_stream, checks.text),
        batch_size=r.get("batch_size", PostmarkConfig.batch_size, _batch_size),
        timeout=r.get("timeout", PostmarkConfig.timeout, checks.positive_number),
        max_retries=r.get("max_retries", PostmarkConfig.max_retries, checks.non_negative_int),
        rate_limit=r.get("rate_limit", PostmarkConfig.rate_limit, checks.non_negative_number),
    )
    r.finish()

    r = checks.Reader(top.get("webhooks", {}, lambda v: v), "webhooks", problems)
    webhooks = WebhooksConfig(
        mailgun_key_env=r.get("mailgun_key_env", WebhooksConfig.mailgun_key_env, checks.env_name),
        postmark_secret_env=r.get(
            "postmark_secret_env", WebhooksConfig.postmark_secret_env, checks.env_name
        ),
        ses_topic_arns=r.get("ses_topic_arns", (), _arn_list),
    )
    r.finish()

    r = checks.Reader(top.get("bounces", {}, lambda v: v), "bounces", problems)
    bounces = BouncesConfig(
        soft_limit=r.get("soft_limit", BouncesConfig.soft_limit, checks.positive_int),
        window=r.get("window", BouncesConfig.window, checks.duration),
    )
    r.finish()

    r = checks.Reader(top.get("store", {}, lambda v: v), "store", problems)
    store_url = r.get("url", StoreConfig.url, checks.text)
    if store_url.startswith("sqlite:///") and not store_url.startswith("sqlite:////"):
        # A relative SQLite path is relative to the config file, like every other path.
        rel = store_url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            store_url = "sqlite:///" + str((root / rel).resolve())
    store = StoreConfig(
        url=store_url, secret_env=r.get("secret_env", "PUBLISHER_SECRET", checks.env_name)
    )
    r.finish()

    r = checks.Reader(top.get("server", {}, lambda v: v), "server", problems)
    server = ServerConfig(
        base_url=r.get("base_url", site.url, checks.optional_url),
        host=r.get("host", "127.0.0.1", checks.text),
        port=r.get("port", 8000, checks.port),
        in_run=r.get("in_run", False, checks.boolean),
        subscribe_rate=r.get(
            "subscribe_rate", ServerConfig.subscribe_rate, checks.non_negative_int
        ),
        confirm_resend=r.get("confirm_resend", ServerConfig.confirm_resend, checks.duration),
        trusted_proxies=r.get("trusted_proxies", (), checks.networks),
    )
    r.finish()
    top.finish()

    if digest.schedule != DigestConfig.schedule:
        # Read exactly as the digest and the scheduler will read it, so that
        # publisher check and a reload in publisher run refuse it before use.
        problem = schedule_problem(digest.schedule, site.timezone)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise ConfigError(problems, source)
    return Config(
        site,
        paths,
        feeds,
        permalink,
        digest,
        smtp,
        store,
        server,
        dkim=dkim,
        bounces=bounces,
        webhooks=webhooks,
        postmark=postmark,
    )


def _batch_size(value: object) -> int:
    number = checks.positive_int(value)
    if number > 500:
        raise ValueError("must be 1 to 500 (the most Postmark takes in one request)")
    return number


def _dkim(r: checks.Reader, root: Path, problems: list[str]) -> DkimConfig:
    """The dkim section: a selector and exactly one of key_file and key_env."""
    selector = r.get("selector", "", checks.text)
    domain = r.get("domain", "", checks.text)
    key_file = r.get("key_file", "", checks.text)
    key_env = r.get("key_env", "", checks.env_name)
    r.finish()
    if not (selector or domain or key_file or key_env):
        return DkimConfig()
    if not selector:
        problems.append("dkim.selector: is required to sign (the DNS name <selector>._domainkey)")
    if bool(key_file) == bool(key_env):
        problems.append("dkim: give exactly one of key_file and key_env for the private key")
    path = (root / key_file).resolve() if key_file else None
    if path is not None:
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"dkim.key_file: cannot read {path}: {exc.strerror or exc}")
    return DkimConfig(selector=selector, domain=domain, key_file=path, key_env=key_env)


def find_config(start: Path | None = None) -> Path | None:
    """``config.yaml`` in ``start`` (default: the current folder) or its nearest parent.

    As git finds ``.git``: a command run in ``posts/`` or ``templates/`` uses the site's
    config. Returned relative to ``start`` when found there, else absolute.
    """
    here = Path(".") if start is None else start
    if (here / "config.yaml").is_file():
        return here / "config.yaml"
    for parent in here.absolute().parents:
        if (parent / "config.yaml").is_file():
            return parent / "config.yaml"
    return None


def load_config(path: Path | None = None) -> Config:
    """Read and validate ``path``, or the ``config.yaml`` :func:`find_config` finds."""
    if path is None:
        found = find_config()
        if found is None:
            raise ConfigError(
                [
                    "not found in the current folder or its parents; run from the site"
                    " folder, pass --config PATH or set PUBLISHER_CONFIG"
                ],
                "config.yaml",
            )
        path = found
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
    return replace(config, source=path.absolute())


def secret_from_env(name: str) -> str | None:
    """Return the secret held in environment variable ``name``, if set and non-empty."""
    value = os.environ.get(name, "")
    return value or None


def _arn_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    arns = tuple(checks.text(item) for item in items)
    if not all(a.startswith("arn:aws") and a.count(":") >= 5 for a in arns):
        raise ValueError("must be SNS topic ARNs (arn:aws:sns:REGION:ACCOUNT:TOPIC)")
    return arns


# A local part holds at most 64 characters (RFC 5321); the tag publisher.mail.verp
# adds is "+<row id, up to 10 digits>-<16 characters>".
_MAX_BOUNCE_LOCAL = 64 - 1 - 10 - 1 - 16


def _bounce_problem(address: str) -> str:
    """Why ``address`` cannot be the base of per-message return paths; "" if it can."""
    if not address:
        return ""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or "." not in domain:
        return f"must be an address such as bounces@example.com, got {address!r}"
    if not (address.isascii() and address.isprintable()) or any(c in address for c in " <>+,;"):
        return f"must be a plain ASCII address without '+', got {address!r}"
    if len(local) > _MAX_BOUNCE_LOCAL:
        return (
            f"the part before '@' must be at most {_MAX_BOUNCE_LOCAL} characters,"
            " to leave room for each message's tag"
        )
    return ""

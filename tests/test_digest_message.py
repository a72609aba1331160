"""The digest message: MIME structure, headers, and no way to inject a header."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from publisher.config import Config
from publisher.digest.message import build_message, list_id, make_message_id
from publisher.digest.render import Recipient, RenderedDigest, recipient_for
from publisher.errors import ConfigError, PermanentSendError
from publisher.tokens import verify_token
from tests.conftest import Site

NOW = datetime(2026, 11, 23, 0, 0, 5, tzinfo=UTC)
SECRET = b"message test secret"
RENDERED = RenderedDigest(
    subject="Test Site: 新着記事 2 件 · 2026年11月23日",
    html="<!DOCTYPE html><html><body><p>MSとAWS</p></body></html>",
    text="MSとAWS\nhttps://example.com/a.html\n",
)


def configured(site: Site, **digest: str) -> Config:
    site.write_config(
        digest={"from": "Test Site <news@example.com>", "reply_to": "editor@example.com", **digest}
    )
    return site.config()


def reader(config: Config, name: str = "山田 太郎") -> Recipient:
    return recipient_for(config, 42, "yamada@example.net", name, SECRET)


def build(config: Config, recipient: Recipient, rendered: RenderedDigest = RENDERED) -> bytes:
    message = build_message(
        config,
        recipient=recipient,
        rendered=rendered,
        message_id=make_message_id(config, "2026-W48", 42),
        now=NOW,
    )
    return message.as_bytes()


def parse(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_multipart_alternative_text_first_html_last(site: Site) -> None:
    config = configured(site)
    data = build(config, reader(config))
    assert data.isascii()  # 7-bit safe: any server takes it
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    message = parse(data)
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all(p["Content-Transfer-Encoding"] in ("base64", "quoted-printable") for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == RENDERED.text
    assert "MSとAWS" in parts[1].get_content()


def test_headers(site: Site) -> None:
    site.write_config(site={"title": "Test Site", "url": "https://example.com"})
    config = configured(site, unsubscribe_mailto="unsubscribe@example.com")
    data = build(config, reader(config))
    message = parse(data)
    assert message["From"] == "Test Site <news@example.com>"
    assert message["Reply-To"] == "editor@example.com"
    assert message["To"] == "山田 太郎 <yamada@example.net>"
    assert message["Subject"] == RENDERED.subject
    assert b"Subject: Test Site: =?utf-8?" in data  # RFC 2047 encoded words
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == make_message_id(config, "2026-W48", 42)
    assert message["List-ID"] == "Test Site <digest.example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = [link.strip().strip("<>") for link in message["List-Unsubscribe"].split(",")]
    https, mailto = links
    assert https.startswith("https://example.com/unsubscribe/")
    token = https.rsplit("/", 1)[1]
    assert verify_token(SECRET, token, "unsubscribe") == 42
    assert mailto == f"mailto:unsubscribe@example.com?subject=unsubscribe%20{token}"
    # The long link is folded between links, never encoded into RFC 2047 words.
    assert b"List-Unsubscribe: <https://example.com/unsubscribe/" in data


def test_no_mailto_unless_configured(site: Site) -> None:
    config = configured(site)
    message = parse(build(config, reader(config)))
    assert "mailto:" not in message["List-Unsubscribe"]


def test_message_id_is_stable_per_digest_and_subscriber(site: Site) -> None:
    config = configured(site)
    first = make_message_id(config, "2026-W48", 42)
    assert first == make_message_id(config, "2026-W48", 42)
    assert first != make_message_id(config, "2026-W48", 43)
    assert first != make_message_id(config, "2026-W49", 42)
    assert first.startswith("<digest.2026-W48.") and first.endswith("@example.com>")


def test_list_id_from_config(site: Site) -> None:
    assert list_id(configured(site, list_id="news.example.com")) == "<news.example.com>"


def test_a_post_title_with_crlf_cannot_inject_a_header(site: Site) -> None:
    config = configured(site)
    evil = dataclasses.replace(RENDERED, subject="Hello\r\nBcc: victim@example.org")
    with pytest.raises(PermanentSendError, match=r"Subject: refusing a header value"):
        build(config, reader(config), evil)
    with pytest.raises(PermanentSendError, match=r"Subject"):
        build(config, reader(config), dataclasses.replace(RENDERED, subject="a\nb"))


def test_a_subscriber_name_with_crlf_cannot_inject_a_header(site: Site) -> None:
    config = configured(site)
    with pytest.raises(PermanentSendError, match=r"^To: "):
        build(config, reader(config, name="Eve\r\nBcc: victim@example.org"))


def test_config_values_with_crlf_are_refused(site: Site) -> None:
    # The config loader refuses them, naming the key...
    site.write_config(digest={"from": "news@example.com\r\nBcc: victim@example.org"})
    with pytest.raises(ConfigError, match=r"digest\.from: must be one line"):
        site.config()
    # ...and the message refuses them even if a config object was built by hand.
    config = configured(site, **{"from": "news@example.com"})
    for field in ("sender", "reply_to", "list_id", "unsubscribe_mailto"):
        bad = dataclasses.replace(
            config,
            digest=dataclasses.replace(config.digest, **{field: "x@example.com\r\nBcc: v@x.org"}),
        )
        with pytest.raises(PermanentSendError, match="line break"):
            build(bad, reader(bad))


def test_sender_is_required_and_must_be_an_address(site: Site) -> None:
    config = site.config()
    with pytest.raises(ConfigError, match=r"digest\.from: is required"):
        build(config, reader(config))
    config = configured(site, **{"from": "not an address"})
    with pytest.raises(ConfigError, match=r"digest\.from: must be one email address"):
        build(config, reader(config))

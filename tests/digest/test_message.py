"""The digest message: MIME structure, headers, and no way to inject a header."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import pytest
from markupsafe import escape

from publisher.build.pipeline import load_site
from publisher.config import Config
from publisher.digest.filling import Filling, Recipient, RenderedDigest
from publisher.digest.message import MessageBuilder, build_message
from publisher.digest.period import period_at
from publisher.digest.render import DigestRenderer, recipient_for
from publisher.digest.select import group_posts
from publisher.digest.views import post_views
from publisher.digest.wrap import longest_line
from publisher.errors import ConfigError, PermanentSendError
from publisher.mail.headers import POLICY, address_header, list_id, make_message_id
from publisher.mail.prepared import PreparedMessage
from publisher.mail.tokens import verify_token
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


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.org",
        "=?utf-8?q?Eve=0D=0ABcc=3A_victim@example.org?=",
        "Eve\x0bBcc: victim@example.org",
        "Eve Bcc: victim@example.org " + "with a name long enough to be folded " * 3,
    ],
)
def test_a_subscriber_name_cannot_inject_a_header_or_stop_the_message(
    site: Site, name: str
) -> None:
    # The name is cleaned to one line (a name can never stop a send), and what is
    # left is only ever a display name.
    config = configured(site)
    data = build(config, reader(config, name=name))
    message = parse(data)
    assert message["Bcc"] is None
    [to] = message["To"].addresses
    assert to.addr_spec == "yamada@example.net"
    assert to.display_name.startswith("Eve Bcc: victim@example.org")
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc" not in head and b"\x0b" not in head


def test_an_address_no_header_can_carry_is_refused(site: Site) -> None:
    config = configured(site)
    for address in ("bäd@example.net", "a@b@example.net", "x@example.net>, y@example.org"):
        with pytest.raises(PermanentSendError, match=r"^To: .* is not an address a header"):
            build(config, dataclasses.replace(reader(config), email=address))


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


# --- the bytes that travel ----------------------------------------------------------------


def prepare(
    config: Config,
    recipient: Recipient,
    content: RenderedDigest | Filling = RENDERED,
    builder: MessageBuilder | None = None,
) -> PreparedMessage:
    return (builder or MessageBuilder(config)).prepare(
        recipient=recipient,
        content=content,
        message_id=make_message_id(config, "2026-W48", 42),
        now=NOW,
    )


def collapsed(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_8bit_form_for_servers_that_take_it_7bit_form_for_the_others(site: Site) -> None:
    config = configured(site)
    prepared = prepare(config, reader(config))
    assert (prepared.sender, prepared.recipients) == ("news@example.com", ("yamada@example.net",))
    eight, seven = prepared.data(), prepared.data(eight_bit=False)
    assert not eight.isascii() and seven.isascii()
    assert longest_line(eight) <= 998 and longest_line(seven) <= 998
    for data, cte in ((eight, "8bit"), (seven, "base64")):
        message = parse(data)
        assert message["Message-ID"] == prepared.message_id
        parts = list(message.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert [p["Content-Transfer-Encoding"] for p in parts] == [cte, cte]
        assert parts[0].get_content().replace("\r\n", "\n") == RENDERED.text
        assert parts[1].get_content().replace("\r\n", "\n") == RENDERED.html
    # Headers are the same in both forms; only the parts are encoded differently.
    assert eight.split(b"\r\n\r\n")[0] == seven.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Ann",
        "Ann Lee-Smith",
        "Dr. Ann O'Hara, PhD",
        'Say "hi" \\ there',
        "山田 太郎",
        "Ελένη Παπαδοπούλου",
        "🙂 Emoji Person",
        "とても長い名前" * 20,
        "Ann\tTab",
        " Spaced  Name ",
        "A" * 120,
    ],
)
def test_a_to_header_reads_back_as_the_name_and_address(name: str) -> None:
    value = address_header(name, "reader@example.net")
    header = to_header(value)
    [address] = header.addresses
    assert address.addr_spec == "reader@example.net"
    assert not header.defects
    # What the standard library's own folding gives, read back the same way (its
    # reader keeps a space between two encoded words, and trims odd spacing).
    username, _, domain = "reader@example.net".partition("@")
    library = POLICY.header_factory("To", str(Address(name, username, domain))).fold(policy=POLICY)
    theirs = to_header(library[len("To:") : -2]).addresses[0].display_name
    if name.isascii() or " " in name:
        assert address.display_name == theirs
    else:  # where a long name is cut into encoded words may differ
        assert address.display_name.replace(" ", "") == theirs.replace(" ", "") == name
    if name == " ".join(name.split()) and len(name) <= 60:
        assert address.display_name == name
    line = f"To:{value}"
    assert line.isascii() and "\n" not in line.replace("\r\n ", "")  # folds only
    assert max(len(part) for part in line.split("\r\n")) <= (78 if len(name) <= 60 else 998)


def to_header(value: str) -> Any:
    """A To header's text as a mail reader parses it (unfolded first)."""
    return parse(f"To:{value}\r\n\r\n".encode())["To"]


def test_every_reader_of_one_digest_gets_their_own_values(seed_site: Site) -> None:
    seed_site.write_config(digest={"from": "Test Site <news@example.com>"})
    config = seed_site.config()
    period = period_at(config, datetime(2025, 9, 10, tzinfo=UTC))
    assert period is not None
    published = load_site(config, period.due)[0].published
    renderer = DigestRenderer(
        config, period, post_views(config, published), web_url="https://example.com/d.html"
    )
    selection = group_posts(published, ())
    builder = MessageBuilder(config)
    people = [
        recipient_for(config, i, f"r{i}@example.net", name, SECRET)
        for i, name in enumerate(["Ann", "B & <C>", "山田 花子", "Dan"], start=1)
    ]
    for person in people:
        content = renderer.prepare(selection, person)
        assert isinstance(content, Filling)  # the built-in templates fill in
        fast = parse(prepare(config, person, content, builder).data())
        slow = parse(prepare(config, person, content.rendered()).data())
        assert fast["To"] == slow["To"] and fast["To"].addresses[0].display_name == person.name
        fast_parts, slow_parts = list(fast.iter_parts()), list(slow.iter_parts())
        assert fast_parts[0].get_content() == slow_parts[0].get_content()
        html = fast_parts[1].get_content()
        assert collapsed(html) == collapsed(slow_parts[1].get_content())
        assert collapsed(html) == collapsed(content.rendered().html)
        assert person.unsubscribe_url in html and person.unsubscribe_url in fast["List-Unsubscribe"]
        assert str(escape(person.name)) in html
    # Far fewer lines than the template has: lines are refilled where that changes nothing.
    message = prepare(config, people[0], renderer.prepare(selection, people[0]), builder).data()
    html_part = message.split(b"Content-Type: text/html")[1]
    assert html_part.count(b"\r\n") < content.rendered().html.count("\n") / 2


def test_a_very_long_name_still_makes_a_valid_message(site: Site) -> None:
    config = configured(site)
    name = "長い名前" * 50  # 200 characters, 600 octets on the greeting line
    rendered = RenderedDigest("Subject", f"<p>こんにちは{name}様</p>" * 3, f"{name} 様\n" * 2)
    prepared = prepare(config, reader(config, name=name), rendered)
    assert longest_line(prepared.data()) <= 998
    message = parse(prepared.data())
    # RFC 2047 joins adjacent encoded words; Python's reader leaves a space between them.
    assert message["To"].addresses[0].display_name.replace(" ", "") == name
    assert message.get_body(("html",)).get_content() == rendered.html  # type: ignore[union-attr]

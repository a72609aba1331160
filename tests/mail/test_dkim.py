"""DKIM: every message the real ``publisher`` sends is signed, and verifies with dkimpy.

The keys in ``tests/mail/keys`` were made for these tests only (``openssl genrsa
2048`` and a PyNaCl Ed25519 seed); verification looks the public key up through
an injected DNS function instead of the network.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest

from publisher.store import Store
from tests.conftest import Site
from tests.smtp_server import SmtpServer

KEYS = Path(__file__).parent / "keys"
NOW = "2025-09-08T00:00:00+00:00"  # 09:00 JST on the Monday after the seed post
SECRET = {"PUBLISHER_SECRET": "dkim test secret"}
RSA_TXT = b"v=DKIM1; k=rsa; p=" + (KEYS / "dkim-rsa.pub").read_bytes().strip()
ED_TXT = b"v=DKIM1; k=ed25519; p=" + (KEYS / "dkim-ed25519.pub").read_bytes().strip()


def dns(records: dict[bytes, bytes]) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def verify(
    data: bytes, txt: bytes = RSA_TXT, name: bytes = b"mail._domainkey.example.com."
) -> bool:
    try:
        return bool(dkim.verify(data, dnsfunc=dns({name: txt})))
    except (ValueError, dkim.DKIMException):  # PyNaCl's, for a key of another kind
        return False


@pytest.fixture
def signing_site(seed_site: Site) -> Site:
    seed_site.write_config(
        digest={"from": "Test Site <news@example.com>", "backend": "outbox"},
        dkim={"selector": "mail", "key_file": str(KEYS / "dkim-rsa.pem")},
    )
    with Store.open(seed_site.config()) as store:
        for name in ("ann", "bob"):
            store.add_subscriber(f"{name}@example.net", now=datetime(2025, 9, 1, tzinfo=UTC))
    return seed_site


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_every_digest_in_the_outbox_is_signed_and_a_changed_byte_fails(
    signing_site: Site,
) -> None:
    result = signing_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 0, result.stderr
    files = sorted((signing_site.root / "outbox").glob("*.eml"))
    assert len(files) == 2
    for path in files:
        data = crlf(path.read_bytes())  # mail files keep Unix line ends; the wire has CRLF
        message = message_from_bytes(data, policy=policy.default)
        assert message["Subject"].startswith("Test Site: 新着記事")  # a Japanese subject
        signature = str(message["DKIM-Signature"])
        assert "a=rsa-sha256" in signature and "c=relaxed/relaxed" in signature
        assert "d=example.com" in signature and "s=mail" in signature
        signed = {h.strip().lower() for h in signature.split("h=")[1].split(";")[0].split(":")}
        assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe"} <= signed
        assert {"list-unsubscribe-post", "mime-version", "content-type"} <= signed
        assert verify(data)
        # One byte of the body changed, then one of the subject: both fail.
        body_at = data.index(b"\r\n\r\n") + 10
        changed = data[:body_at] + bytes([data[body_at] ^ 1]) + data[body_at + 1 :]
        assert not verify(changed)
        assert not verify(data.replace(b"Subject: ", b"Subject: X", 1))
        assert not verify(data, txt=ED_TXT)  # another key does not verify it


def test_digests_sent_over_smtp_verify_as_received_in_8bit_and_7bit(
    signing_site: Site, smtp_server: SmtpServer
) -> None:
    signing_site.write_config(
        digest={"from": "Test Site <news@example.com>", "backend": "smtp"},
        smtp=smtp_server.config(),
        dkim={"selector": "mail", "key_file": str(KEYS / "dkim-rsa.pem")},
    )
    result = signing_site.run("--now", NOW, "digest", "send", env=SECRET)
    assert result.returncode == 0, result.stderr
    received = smtp_server.wait_for(2)
    assert all("BODY=8BITMIME" in r.mail_options for r in received)  # 8-bit bodies
    for message in received:
        assert verify(message.data)


def test_a_server_without_8bitmime_gets_a_7bit_form_signed_on_its_own(
    signing_site: Site,
) -> None:
    with SmtpServer(eight_bit_mime=False) as server:
        signing_site.write_config(
            digest={"from": "Test Site <news@example.com>", "backend": "smtp"},
            smtp=server.config(),
            dkim={"selector": "mail", "key_file": str(KEYS / "dkim-rsa.pem")},
        )
        result = signing_site.run("--now", NOW, "digest", "send", env=SECRET)
        assert result.returncode == 0, result.stderr
        received = server.wait_for(2)
    for message in received:
        assert message.data.isascii()
        assert verify(message.data)


def test_an_ed25519_key_from_the_environment_signs_too(signing_site: Site) -> None:
    signing_site.write_config(
        digest={"from": "Test Site <news@mail.example.org>", "backend": "outbox"},
    )
    signing_site.settings["dkim"] = {}
    signing_site.write_config(dkim={"selector": "ed", "key_env": "DKIM_TEST_KEY"})
    key = (KEYS / "dkim-ed25519.key").read_text("ascii").strip()
    result = signing_site.run("--now", NOW, "digest", "send", env={**SECRET, "DKIM_TEST_KEY": key})
    assert result.returncode == 0, result.stderr
    for path in (signing_site.root / "outbox").glob("*.eml"):
        data = crlf(path.read_bytes())
        assert b"a=ed25519-sha256" in data
        # The domain comes from the From address when dkim.domain is not given.
        assert verify(data, txt=ED_TXT, name=b"ed._domainkey.mail.example.org.")


@pytest.mark.parametrize(
    ("dkim_settings", "env", "expected"),
    [
        ({"selector": "mail", "key_file": "missing.pem"}, {}, "dkim.key_file: cannot read "),
        ({"selector": "mail"}, {}, "dkim: give exactly one of key_file and key_env"),
        ({"key_env": "DKIM_TEST_KEY"}, {}, "dkim.selector: is required"),
        (
            {"selector": "mail", "key_env": "DKIM_TEST_KEY"},
            {},
            "dkim.key_env: environment variable DKIM_TEST_KEY is not set",
        ),
        (
            {"selector": "mail", "key_env": "DKIM_TEST_KEY"},
            {"DKIM_TEST_KEY": "not a key"},
            "not a PEM RSA key nor the base64 of an Ed25519 seed",
        ),
    ],
)
def test_a_missing_or_unreadable_key_is_one_config_line(
    signing_site: Site, dkim_settings: dict[str, str], env: dict[str, str], expected: str
) -> None:
    signing_site.write_config(digest={"from": "Test Site <news@example.com>", "backend": "outbox"})
    signing_site.settings["dkim"] = {}  # replaced, not merged
    signing_site.write_config(dkim=dkim_settings)
    result = signing_site.run(
        "--now", NOW, "digest", "send", env={**SECRET, "DKIM_TEST_KEY": "", **env}
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert expected in line and "Traceback" not in result.stderr
    assert not list((signing_site.root / "outbox").glob("*.eml"))


def test_a_confirmation_email_is_signed_by_every_backend(
    signing_site: Site, smtp_server: SmtpServer
) -> None:
    from publisher.mail import make_backend
    from publisher.site.templating import environment
    from publisher.web.confirmation import confirmation_message

    signing_site.write_config(smtp=smtp_server.config())
    config = signing_site.config()
    message = confirmation_message(
        config,
        environment(None),
        email="new@example.net",
        name="新しい人",
        confirm_url="https://example.com/confirm/x",
        now=datetime(2025, 9, 8, tzinfo=UTC),
    )
    for name in ("outbox", "smtp"):
        with make_backend(config, name=name) as backend:
            backend.send(message)
    [eml] = (signing_site.root / "outbox").glob("*.eml")
    assert verify(crlf(eml.read_bytes()))
    [received] = smtp_server.wait_for(1)
    assert verify(received.data)

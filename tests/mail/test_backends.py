"""The outbox backend (real files) and the in-memory backend, and choosing a backend."""

from __future__ import annotations

import email
import email.policy
import re
import stat
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from publisher.errors import (
    ConfigError,
    PermanentSendError,
    TemporarySendError,
    UncertainSendError,
)
from publisher.mail import Backend, MemoryBackend, OutboxBackend, SmtpBackend, make_backend
from publisher.mail.base import wire_bytes
from publisher.mail.postmark import PostmarkBackend
from publisher.mail.prepared import PreparedMessage
from tests.conftest import Site


def message(to: str, message_id: str | None = "<2026-W49.1@example.com>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Test Site <news@example.com>"
    msg["To"] = to
    msg["Subject"] = "日本語の件名 and a long subject that will need folding " * 2
    if message_id is not None:
        msg["Message-ID"] = message_id
    msg.set_content("Hello.\n.a line with a dot\n")
    msg.add_alternative("<p>Hello.</p>\n", subtype="html")
    return msg


def read(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --- outbox -------------------------------------------------------------------------------


def test_each_message_becomes_an_eml_file_named_after_its_message_id(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    with OutboxBackend(outbox) as backend:
        backend.send(message("ann@example.com"))
    [written] = outbox.iterdir()
    assert written.name == "2026-W49.1@example.com.eml"
    parsed = read(written)
    assert parsed["To"] == "ann@example.com"
    assert parsed["Subject"] == "日本語の件名 and a long subject that will need folding " * 2
    body = parsed.get_body(("plain",))
    assert body is not None and body.get_content() == "Hello.\n.a line with a dot\n"
    assert b"\r" not in written.read_bytes()  # Unix line ends, like any mail file here


def prepared(to: str) -> PreparedMessage:
    eight = (
        f"From: news@example.com\r\nTo: {to}\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n'
        "\r\n本文です。\r\n"
    ).encode()
    return PreparedMessage("news@example.com", (to,), "<8bit.1@example.com>", eight)


def test_messages_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    # A message holds its reader's address and personal unsubscribe link.
    outbox = tmp_path / "outbox"
    with OutboxBackend(outbox) as backend:
        backend.send(message("ann@example.com"))
        backend.send(prepared("bob@example.com"))
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
    modes = sorted(stat.S_IMODE(path.stat().st_mode) for path in outbox.iterdir())
    assert modes == [0o600, 0o600]


def test_a_prepared_message_is_written_as_it_is_with_unix_line_ends(tmp_path: Path) -> None:
    message = prepared("ann@example.com")
    with OutboxBackend(tmp_path) as backend:
        backend.send(message)
    [written] = tmp_path.iterdir()
    assert written.name == "8bit.1@example.com.eml"
    assert written.read_bytes() == message.eight_bit.replace(b"\r\n", b"\n")
    assert read(written).get_content() == "本文です。\n"


def test_sending_the_same_message_again_replaces_its_file(tmp_path: Path) -> None:
    backend = OutboxBackend(tmp_path)
    backend.send(message("ann@example.com"))
    backend.send(message("ann@example.com"))
    backend.send(message("bob@example.com", "<2026-W49.2@example.com>"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-W49.1@example.com.eml",
        "2026-W49.2@example.com.eml",
    ]  # and no temporary files left behind


def test_a_hostile_message_id_stays_inside_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    backend = OutboxBackend(outbox)
    backend.send(message("ann@example.com", "<../../etc/passwd@example.com>"))
    backend.send(message("bob@example.com", "<" + "x" * 300 + "@example.com>"))
    names = sorted(p.name for p in outbox.iterdir())
    assert all(p.parent == outbox for p in outbox.iterdir())
    assert names[0] == "etc_passwd@example.com.eml"
    assert len(names[1]) < 130
    assert list(tmp_path.iterdir()) == [outbox]


def test_without_message_id_the_name_comes_from_the_content(tmp_path: Path) -> None:
    backend = OutboxBackend(tmp_path)
    backend.send(message("ann@example.com", None))
    backend.send(message("bob@example.com", None))
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 2
    assert all(re.fullmatch(r"[0-9a-f]{32}\.eml", n) for n in names)


def test_bcc_is_not_written(tmp_path: Path) -> None:
    msg = message("ann@example.com")
    msg["Bcc"] = "archive@example.com"
    OutboxBackend(tmp_path).send(msg)
    [written] = tmp_path.iterdir()
    assert "Bcc" not in read(written)
    assert b"archive@" not in written.read_bytes()


def test_a_folder_that_cannot_be_written_is_a_temporary_error(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(TemporarySendError, match=r"^ann@example\.com: cannot write .*outbox"):
        OutboxBackend(blocker).send(message("ann@example.com"))


def test_a_message_without_recipient_is_a_permanent_error(tmp_path: Path) -> None:
    msg = message("ann@example.com")
    del msg["To"]
    with pytest.raises(PermanentSendError, match="message has no recipient"):
        OutboxBackend(tmp_path).send(msg)
    del msg["From"]
    msg["To"] = "ann@example.com"
    with pytest.raises(PermanentSendError, match=r"^ann@example\.com: message has no From"):
        OutboxBackend(tmp_path).send(msg)
    assert list(tmp_path.iterdir()) == []


# --- memory -------------------------------------------------------------------------------


def test_memory_backend_keeps_messages_and_fails_on_request() -> None:
    backend = MemoryBackend()
    backend.fail_for("bob@example.com", PermanentSendError("550 no such user"))
    backend.fail_for("carol@example.com", TemporarySendError("451 later"), times=1)
    backend.fail_for("dave@example.com", UncertainSendError("lost after DATA"))
    outcomes = []
    with backend:
        assert backend.is_open
        for name in ("ann", "bob", "carol", "carol", "dave"):
            try:
                backend.send(message(f"{name}@example.com"))
                outcomes.append(name)
            except (PermanentSendError, TemporarySendError, UncertainSendError) as exc:
                outcomes.append(f"{name}: {type(exc).__name__}")
    assert not backend.is_open
    assert outcomes == [
        "ann",
        "bob: PermanentSendError",
        "carol: TemporarySendError",
        "carol",
        "dave: UncertainSendError",
    ]
    # An uncertain send did reach the server, as it may have in real life.
    assert [m["To"] for m in backend.messages] == [
        "ann@example.com",
        "carol@example.com",
        "dave@example.com",
    ]
    assert len(backend.to("CAROL@example.com")) == 1
    assert backend.attempts == 5


def test_memory_backend_keeps_a_prepared_message_as_a_server_would_read_it() -> None:
    with MemoryBackend() as backend:
        backend.send(prepared("ann@example.com"))
    [kept] = backend.to("ann@example.com")
    assert (kept["Subject"], kept.get_content()) == ("8bit", "本文です。\n")


# --- choosing a backend -------------------------------------------------------------------


def test_the_outbox_is_the_default(site: Site) -> None:
    backend = make_backend(site.config())
    assert isinstance(backend, OutboxBackend)
    assert backend.folder == site.root / "outbox"
    assert isinstance(backend, Backend)


def test_backend_by_name_and_by_config(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PUBLISHER_SMTP_USERNAME", raising=False)
    monkeypatch.delenv("PUBLISHER_SMTP_PASSWORD", raising=False)
    site.write_config(digest={"backend": "smtp"}, paths={"outbox": "var/mail"})
    config = site.config()
    assert isinstance(make_backend(config), SmtpBackend)
    assert isinstance(make_backend(config, name="memory"), MemoryBackend)
    outbox = make_backend(config, name="outbox")
    assert isinstance(outbox, OutboxBackend) and outbox.folder == site.root / "var" / "mail"
    with pytest.raises(
        ConfigError, match=r"digest\.backend: must be one of outbox, smtp, postmark, memory"
    ):
        make_backend(config, name="pigeon")
    monkeypatch.setenv("PUBLISHER_POSTMARK_TOKEN", "server-token")
    postmark = make_backend(config, name="postmark")
    assert isinstance(postmark, PostmarkBackend)
    assert postmark.endpoint == "https://api.postmarkapp.com/email/batch"
    assert postmark.batch_size == 500 and postmark.limiter is None


# --- the bytes of a message ---------------------------------------------------------------


def _variety() -> list[Message]:
    plain = EmailMessage()
    plain["From"], plain["To"], plain["Subject"] = "a@example.com", "b@example.com", "Hi"
    plain.set_content("ascii only\n.leading dot\n\nFrom the start\n")
    qp = EmailMessage()
    qp["From"], qp["To"], qp["Subject"] = "a@example.com", "b@example.com", "Café ☕ " * 10
    qp.set_content("Déjà vu, a mostly Latin text with an accent or two. " * 40)
    mixed = message("ann@example.com")
    mixed.add_attachment(bytes(range(256)) * 40, maintype="application", subtype="octet-stream",
                         filename="blob.bin")  # fmt: skip
    mixed.add_attachment(qp)  # message/rfc822
    raw = EmailMessage()
    raw["From"], raw["To"] = "a@example.com", "b@example.com"
    raw.set_payload("bare\rCR and\nLF and\r\nCRLF\n", "us-ascii")
    legacy = Message()  # the compat32 API
    legacy["From"], legacy["To"] = "a@example.com", "b@example.com"
    legacy.set_payload("old style\nbody\n")
    return [plain, qp, mixed, raw, legacy]


@pytest.mark.parametrize("linesep", ["\r\n", "\n"])
def test_wire_bytes_are_the_standard_librarys_bytes(linesep: str) -> None:
    for msg in _variety():
        expected = msg.as_bytes(policy=msg.policy.clone(linesep=linesep))
        assert wire_bytes(msg, linesep) == expected  # type: ignore[arg-type]

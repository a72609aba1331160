"""Reading a bounce or a complaint: who it is about, hard or soft, and why.

Understood: RFC 3464 delivery status notifications (``multipart/report;
report-type=delivery-status``, as Postfix, Gmail, Outlook and most servers send
them), RFC 5965 ARF complaint reports (``report-type=feedback-report``), and
the common bounces without a status part (Exim's and qmail's plain text, which
name the address and the SMTP reply in the body). Which message it is about is
read first from the address the bounce came back to (the VERP return path, see
:mod:`.verp`), then from the report's own fields.

Pure: bytes in, a :class:`Bounce` (or None) out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses

__all__ = ["Bounce", "read_bounce"]

HARD, SOFT, COMPLAINT = "hard", "soft", "complaint"


@dataclass(frozen=True)
class Bounce:
    """What a bounce or complaint says."""

    kind: str  # "hard" | "soft" | "complaint"
    recipient: str  # the address it is about, as the report gives it ("" if none)
    return_paths: tuple[str, ...]  # the addresses the report came back to (VERP)
    reason: str  # the status and diagnostic, or the complaint's type


_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_REPLY = re.compile(r"\b([45])\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s+)?[^\n]*")


def _fields(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status or feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package parses delivery-status into groups
        return [p for p in payload if isinstance(p, Message)]
    text = payload if isinstance(payload, str) else ""
    groups = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [message_from_bytes(g.encode("utf-8", "replace") + b"\n\n") for g in groups if g]


def _address(value: str | None) -> str:
    """The address of a field such as ``rfc822; ann@example.net``."""
    if not value:
        return ""
    found = _ADDRESS.search(value.partition(";")[2] or value)
    return found.group(0) if found else ""


def _return_paths(message: Message) -> tuple[str, ...]:
    values = [
        str(message.get(name, ""))
        for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To")
    ]
    return tuple(dict.fromkeys(a for _, a in getaddresses(values) if "@" in a))


def _part(message: EmailMessage, content_type: str) -> Message | None:
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _dsn(message: EmailMessage, paths: tuple[str, ...]) -> Bounce | None:
    status_part = _part(message, "message/delivery-status")
    if status_part is None:
        return None
    for group in _fields(status_part)[1:] or _fields(status_part):
        action = str(group.get("Action", "")).strip().lower()
        status = str(group.get("Status", "")).strip()
        recipient = _address(group.get("Final-Recipient")) or _address(
            group.get("Original-Recipient")
        )
        if not recipient or action in ("delivered", "relayed", "expanded"):
            continue
        diagnostic = " ".join(str(group.get("Diagnostic-Code", "")).split())
        hard = status.startswith("5") or (action == "failed" and not status.startswith("4"))
        kind = HARD if hard else SOFT
        reason = f"{status} {diagnostic.partition(';')[2].strip() or diagnostic}".strip()
        return Bounce(kind, recipient, paths, reason or action)
    return None


def _arf(message: EmailMessage, paths: tuple[str, ...]) -> Bounce | None:
    report = _part(message, "message/feedback-report")
    if report is None:
        return None
    fields = _fields(report)
    first = fields[0] if fields else Message()
    feedback = str(first.get("Feedback-Type", "abuse")).strip() or "abuse"
    recipient = _address(first.get("Original-Rcpt-To")) or _address(first.get("Removal-Recipient"))
    original = _part(message, "message/rfc822") or _part(message, "text/rfc822-headers")
    if original is not None:
        inner = original.get_payload()
        inner_message = inner[0] if isinstance(inner, list) and inner else None
        if isinstance(inner_message, Message):
            # The complained-about message's own return path and recipient.
            paths = paths + _return_paths_of_original(inner_message)
            if not recipient:
                recipient = _first_address(str(inner_message.get("To", "")))
    return Bounce(COMPLAINT, recipient, paths, f"complaint: {feedback}")


def _return_paths_of_original(message: Message) -> tuple[str, ...]:
    values = [str(message.get(name, "")) for name in ("Return-Path", "Sender")]
    return tuple(a for _, a in getaddresses(values) if "@" in a)


def _first_address(value: str) -> str:
    found = getaddresses([value])
    return found[0][1] if found and "@" in found[0][1] else ""


def _plain(message: EmailMessage, paths: tuple[str, ...]) -> Bounce | None:
    """Exim's, qmail's and similar bounces: the address and the reply in the text."""
    sender = str(message.get("From", "")).lower()
    subject = str(message.get("Subject", "")).lower()
    if not (
        "mailer-daemon" in sender
        or "postmaster" in sender
        or any(
            w in subject
            for w in ("undeliver", "delivery status", "failure notice", "returned mail")
        )
    ):
        return None
    body = message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    assert isinstance(text, str)
    recipient = ""
    for line in text.splitlines():
        stripped = line.strip().strip("<>:")
        if _ADDRESS.fullmatch(stripped) or (line.startswith("  ") and _ADDRESS.search(line)):
            candidate = _ADDRESS.search(line)
            if candidate and not any(candidate.group(0) == p for p in paths):
                recipient = candidate.group(0)
                break
    reply = _REPLY.search(text)
    status = _STATUS.search(text)
    code = (status.group(1) if status else "") or (reply.group(1) if reply else "")
    if not recipient or not code:
        return None
    kind = HARD if code == "5" else SOFT
    reason = " ".join((reply.group(0) if reply else status.group(0) if status else "").split())
    return Bounce(kind, recipient, paths, reason)


def read_bounce(data: bytes) -> Bounce | None:
    """The bounce or complaint in ``data``; None when it is neither (or says too little)."""
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    paths = _return_paths(message)
    report_type = str(message.get_param("report-type", "", header="content-type")).lower()
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        return _arf(message, paths)
    return _dsn(message, paths) or _arf(message, paths) or _plain(message, paths)

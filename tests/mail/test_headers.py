"""Header values: whatever the text, a header ends only where publisher ends it."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from publisher.errors import PermanentSendError
from publisher.mail.headers import fold, subject_header

HIDDEN_BREAK = "=?utf-8?q?a=0D=0A=0D=0ABcc:_evil@example.org?="


def read_back(name: str, value: str) -> email.message.EmailMessage:
    data = f"{name}:{value}\r\nX-After: kept\r\n\r\nbody\r\n".encode("ascii")
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


@pytest.mark.parametrize(
    "subject",
    [
        f"Decoding {HIDDEN_BREAK} in headers",
        "=?utf-8?b?" + "QQ==" + "?= literally",
        "日本語の =?iso-2022-jp?b?GyRC?= と長い件名" * 4,
        "Plain subject",
        "新着記事 1 件 · 2025年9月8日",
    ],
)
def test_a_subject_reads_back_as_written_and_ends_where_it_should(subject: str) -> None:
    value = subject_header(subject)
    assert value.isascii()
    assert not re.search(r"\r\n(?![ \t])", value)  # only folds
    assert all(len(line) <= 78 for line in f"Subject:{value}".split("\r\n"))
    message = read_back("Subject", value)
    assert message["Subject"] == subject
    assert message["X-After"] == "kept" and message["Bcc"] is None


def test_the_library_fold_refuses_a_value_that_would_break_the_line() -> None:
    with pytest.raises(PermanentSendError, match=r"^Subject: refusing a header that would break"):
        fold("Subject", f"Hi {HIDDEN_BREAK}")
    assert fold("Subject", "Hi there") == " Hi there"

"""Display names: cleaned to one safe line, encoded words and controls included."""

from __future__ import annotations

import pytest

from publisher.mail.names import MAX_NAME, clean_name, name_problem


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Ann Lee", "Ann Lee"),
        ("  山田　太郎 ", "山田 太郎"),  # an ideographic space is white space too
        ("Tab\there", "Tab here"),
        ("Vee\x0bTee\x0cEff", "Vee Tee Eff"),
        ("C1\x85next\x9fend\x7f", "C1 next end"),
        ("Line\u2028Para\u2029End", "Line Para End"),
        ("=?utf-8?q?Hi=0D=0ABcc=3A_evil@example.com?=", "Hi Bcc: evil@example.com"),
        ("=?utf-8?b?5bGx55Sw?= 太郎", "山田 太郎"),
        # An encoded word that decodes to another one is decoded again.
        ("=?utf-8?q?=3D=3Futf-8=3Fq=3FA=3D0AB=3F=3D?=", "A B"),
        # An unknown charset cannot be decoded: the text stays as typed.
        ("=?x-unknown?q?abc?=", "=?x-unknown?q?abc?="),
        ("bytes\udc85gone", "bytesgone"),
    ],
)
def test_clean_name(raw: str, clean: str) -> None:
    assert clean_name(raw) == clean


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("Ann Lee", None),
        ("Tab\there", None),
        ("Ann\nBcc: x", "must be one line"),
        ("Ann\r", "must be one line"),
        ("Vee\x0bTee", "must be one line"),
        ("Line\u2028Bcc: x", "must be one line"),
        ("=?utf-8?q?Hi=0D=0ABcc=3A_evil@example.com?=", "must be one line"),
        ("=?utf-8?q?=3D=3Futf-8=3Fq=3FA=3D0AB=3F=3D?=", "must be one line"),
        ("Hi\udc85Bcc: x", "is not valid UTF-8"),
        ("x" * MAX_NAME, None),
        ("x" * (MAX_NAME + 1), f"is longer than {MAX_NAME} characters"),
    ],
)
def test_name_problem(raw: str, problem: str | None) -> None:
    assert name_problem(raw) == problem

"""Signed link tokens: round trip, and every way a token can be wrong is refused."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from publisher.config import parse_config
from publisher.errors import ConfigError, TokenError
from publisher.mail.tokens import PURPOSES, load_secret, make_token, verify_token

SECRET = b"correct horse battery staple"


def test_round_trip_for_every_purpose() -> None:
    for purpose in PURPOSES:
        token = make_token(SECRET, 42, purpose)
        assert verify_token(SECRET, token, purpose) == 42


def test_token_is_url_safe_and_versioned() -> None:
    token = make_token(SECRET, 7, "unsubscribe")
    assert token.startswith("v1.7.")
    assert all(c.isalnum() or c in "-_." for c in token)


def test_same_input_same_token_different_subscriber_different_token() -> None:
    assert make_token(SECRET, 1, "unsubscribe") == make_token(SECRET, 1, "unsubscribe")
    assert make_token(SECRET, 1, "unsubscribe") != make_token(SECRET, 2, "unsubscribe")


def test_wrong_purpose_is_refused() -> None:
    token = make_token(SECRET, 3, "confirm")
    with pytest.raises(TokenError, match="not valid"):
        verify_token(SECRET, token, "unsubscribe")


def test_other_secret_is_refused() -> None:
    token = make_token(b"another secret", 3, "unsubscribe")
    with pytest.raises(TokenError):
        verify_token(SECRET, token, "unsubscribe")


def test_swapping_the_subscriber_id_is_refused() -> None:
    _v, _id, signature = make_token(SECRET, 3, "unsubscribe").split(".")
    with pytest.raises(TokenError):
        verify_token(SECRET, f"v1.4.{signature}", "unsubscribe")
    # A non-canonical spelling of the same id is not a second valid token.
    with pytest.raises(TokenError, match="malformed"):
        verify_token(SECRET, f"v1.03.{signature}", "unsubscribe")


def test_altered_signature_is_refused() -> None:
    token = make_token(SECRET, 3, "unsubscribe")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(TokenError):
        verify_token(SECRET, flipped, "unsubscribe")
    with pytest.raises(TokenError):
        verify_token(SECRET, token[:-2], "unsubscribe")


def test_unknown_version_is_refused() -> None:
    token = make_token(SECRET, 3, "unsubscribe")
    with pytest.raises(TokenError, match="version"):
        verify_token(SECRET, "v2" + token[2:], "unsubscribe")


@pytest.mark.parametrize(
    "junk",
    ["", "v1", "v1..", "v1.x.abc", "v1.-1.abc", "v1.1.abc.def", "v1.1.ä", "v1.1." + "a" * 500],
)
def test_malformed_tokens_are_refused(junk: str) -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, junk, "unsubscribe")


def test_signature_is_full_hmac_sha256() -> None:
    signature = make_token(SECRET, 9, "preferences").split(".")[2]
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32


def test_unknown_purpose_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, 1, "delete-everything")


def test_load_secret_reads_the_named_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(
        {"site": {"title": "T", "url": "https://example.com"}, "store": {"secret_env": "MY_KEY"}},
        tmp_path,
    )
    monkeypatch.setenv("MY_KEY", "s3cret")
    assert load_secret(config) == b"s3cret"


def test_load_secret_names_the_variable_when_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config({"site": {"title": "T", "url": "https://example.com"}}, tmp_path)
    monkeypatch.delenv("PUBLISHER_SECRET", raising=False)
    with pytest.raises(ConfigError) as caught:
        load_secret(config)
    message = str(caught.value)
    assert "PUBLISHER_SECRET" in message and "is not set" in message
    assert "\n" not in message
    monkeypatch.setenv("PUBLISHER_SECRET", "")
    with pytest.raises(ConfigError, match="PUBLISHER_SECRET"):
        load_secret(config)

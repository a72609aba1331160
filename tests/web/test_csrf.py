"""Form tokens and the browser's cross-site headers (publisher.web.csrf)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from publisher.web.csrf import LIFETIME, check_csrf, cross_site_problem, make_csrf, origin_of

SECRET = b"secret"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BINDING = "unsubscribe:v1.7.abc"


def test_a_token_is_accepted_for_its_own_form_only() -> None:
    token = make_csrf(SECRET, BINDING, NOW)
    assert check_csrf(SECRET, BINDING, token, NOW) is None
    assert (
        check_csrf(SECRET, "unsubscribe:v1.8.abc", token, NOW) == "form token made for another form"
    )
    assert check_csrf(SECRET, "preferences:v1.7.abc", token, NOW) is not None
    assert check_csrf(b"other secret", BINDING, token, NOW) is not None


def test_a_token_expires_and_may_not_come_from_the_future() -> None:
    token = make_csrf(SECRET, BINDING, NOW)
    assert check_csrf(SECRET, BINDING, token, NOW + LIFETIME) is None
    assert check_csrf(SECRET, BINDING, token, NOW + LIFETIME + timedelta(seconds=1)) == (
        "form token expired"
    )
    # A server clock a little behind still takes it; far behind does not.
    assert check_csrf(SECRET, BINDING, token, NOW - timedelta(minutes=4)) is None
    assert check_csrf(SECRET, BINDING, token, NOW - timedelta(hours=1)) == (
        "form token from the future"
    )


@pytest.mark.parametrize(
    "bad", ["", "c1", "c1.x.y", "c2.1.abc", "c1..abc", "c1.-5.abc", "c1.1.abc.d", "a" * 500]
)
def test_malformed_tokens_are_refused(bad: str) -> None:
    assert check_csrf(SECRET, BINDING, bad, NOW) is not None


def test_a_changed_timestamp_breaks_the_signature() -> None:
    version, stamp, mac = make_csrf(SECRET, BINDING, NOW).split(".")
    later = f"{version}.{int(stamp) + 3600}.{mac}"
    assert check_csrf(SECRET, BINDING, later, NOW) == "form token made for another form"


ALLOWED = ("https://news.example.com", "http://127.0.0.1:8000")


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # curl, old browsers: the form token decides
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "none"}, False),  # typed or bookmarked by the user
        ({"sec-fetch-site": "same-site"}, True),  # a sibling subdomain is another site
        ({"sec-fetch-site": "cross-site"}, True),
        ({"origin": "https://news.example.com"}, False),
        ({"origin": "HTTPS://NEWS.EXAMPLE.COM"}, False),
        ({"origin": "http://127.0.0.1:8000"}, False),
        ({"origin": "https://evil.example"}, True),
        ({"origin": "http://127.0.0.1:9999"}, True),
        ({"origin": "null"}, False),  # what no-referrer pages send for their own forms
        ({"origin": "null", "sec-fetch-site": "cross-site"}, True),
        ({"origin": "https://evil.example", "sec-fetch-site": "same-origin"}, True),
    ],
)
def test_cross_site_headers(headers: dict[str, str], refused: bool) -> None:
    assert (cross_site_problem(headers, ALLOWED) is not None) is refused


def test_origin_of_a_url() -> None:
    assert origin_of("https://News.Example.com/path/x?y") == "https://news.example.com"
    assert origin_of("http://127.0.0.1:8000") == "http://127.0.0.1:8000"

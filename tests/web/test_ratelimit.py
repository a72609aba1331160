"""The token bucket behind POST /subscribe (publisher.web.ratelimit)."""

from __future__ import annotations

import pytest

from publisher.web.ratelimit import RateLimiter, client_key


def test_a_burst_then_one_request_per_refill() -> None:
    limiter = RateLimiter(5)
    assert [limiter.take("a", 100.0) for _ in range(5)] == [0.0] * 5
    assert limiter.take("a", 100.0) == pytest.approx(12.0)  # 5 a minute: one every 12 s
    assert limiter.take("a", 106.0) == pytest.approx(6.0)  # refused requests cost nothing
    assert limiter.take("a", 112.0) == 0.0
    assert limiter.take("a", 112.0) == pytest.approx(12.0)
    # A quiet client gets its whole burst back, but no more.
    assert [limiter.take("a", 1000.0) for _ in range(6)][-2:] == [0.0, pytest.approx(12.0)]


def test_each_client_has_its_own_bucket() -> None:
    limiter = RateLimiter(1)
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == pytest.approx(60.0)
    assert limiter.take("b", 0.0) == 0.0


def test_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.take("a", 0.0) == 0.0 for _ in range(100))


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert RateLimiter.retry_after(11.2) == "12"
    assert RateLimiter.retry_after(0.01) == "1"


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("unix-socket") == "unix-socket"


def test_memory_is_bounded() -> None:
    limiter = RateLimiter(2, max_buckets=100)
    for n in range(1000):
        limiter.take(f"client-{n}", float(n))
    assert len(limiter._buckets) <= 100
    # The most recent clients are remembered.
    limiter.take("client-999", 999.0)
    assert limiter.take("client-999", 999.0) > 0

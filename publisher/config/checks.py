"""Checks of single config values, and a reader that names each problem by its key.

Each check takes a raw YAML value and returns it typed, or raises
``ValueError`` saying what it must be; :class:`Reader` records that as
``section.key: must be ..., got ...`` and goes on, so every problem of a file
is reported in one run. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from publisher.config.model import FEED_FORMATS

__all__ = [
    "Reader",
    "boolean",
    "choice",
    "duration",
    "env_name",
    "formats",
    "networks",
    "non_negative_int",
    "non_negative_number",
    "optional_url",
    "permalink",
    "port",
    "positive_int",
    "positive_number",
    "slug_map",
    "text",
    "timezone",
    "url",
    "url_list",
]

T = TypeVar("T")


class Reader:
    """Reads one mapping of the raw config, recording problems under dotted keys."""

    def __init__(self, raw: Any, prefix: str, problems: list[str]) -> None:
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            problems.append(f"{prefix or 'config'}: must be a mapping, got {_show(raw)}")
            raw = {}
        self.raw: dict[Any, Any] = raw

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def get(self, name: str, default: T, check: Callable[[Any], T], required: bool = False) -> T:
        """Return the checked value of ``name``, or ``default`` after recording a problem."""
        self.seen.add(name)
        if name not in self.raw or self.raw[name] is None:
            if required:
                self.problems.append(f"{self.key(name)}: is required")
            return default
        try:
            return check(self.raw[name])
        except ValueError as exc:
            self.problems.append(f"{self.key(name)}: {exc}, got {_show(self.raw[name])}")
            return default

    def finish(self) -> None:
        for name in self.raw:
            if name not in self.seen:
                self.problems.append(f"{self.key(str(name))}: unknown key")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("must be a string")
    result = str(value)
    if "\r" in result or "\n" in result:
        # Values from here end up in feed heads and email headers.
        raise ValueError("must be one line")
    return result


def url(value: Any) -> str:
    given = text(value)
    parts = urlsplit(given)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL")
    return given.rstrip("/")


def url_list(value: Any) -> tuple[str, ...]:
    """A list of absolute http(s) URLs, kept as given (a hub's URL is its own), deduplicated."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("must be a list of absolute http(s) URLs")
    found: list[str] = []
    for item in items:
        given = item if isinstance(item, str) else ""
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.netloc or given != given.strip():
            raise ValueError(f"{_show(item)} is not an absolute http(s) URL")
        if "\r" in given or "\n" in given:
            raise ValueError(f"{_show(item)} must be one line")
        found.append(given)
    return tuple(dict.fromkeys(found))


def optional_url(value: Any) -> str:
    return "" if value == "" else url(value)


def positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("must be a positive integer")
    return value


def port(value: Any) -> int:
    number = positive_int(value)
    if number > 65535:
        raise ValueError("must be a port number (1-65535)")
    return number


def non_negative_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("must be a number >= 0")
    return float(value)


def positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError("must be a number of seconds > 0 (0 would wait forever)")
    return float(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(choices))
        return str(value)

    return check


def formats(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or any(i not in FEED_FORMATS for i in items):
        raise ValueError("must be a list of " + ", ".join(FEED_FORMATS))
    return tuple(dict.fromkeys(items))


def slug_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of name to slug")
    result: dict[str, str] = {}
    for name, slug in value.items():
        if not isinstance(slug, str) or not slug.strip("/. ") or "/" in slug or "\\" in slug:
            raise ValueError(f"slug for {name!r} must be a single path segment")
        result[str(name)] = slug
    return result


def timezone(value: Any) -> ZoneInfo:
    try:
        return ZoneInfo(text(value))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError("must be an IANA time zone name such as Asia/Tokyo") from exc


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(value: Any) -> timedelta:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("must be a duration such as 30m, 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def non_negative_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def networks(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("must be a list of IP addresses or networks")
    for item in items:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network") from exc
    return tuple(str(item) for item in items)


def permalink(value: Any) -> str:
    given = text(value)
    if not given.startswith("/"):
        raise ValueError("must start with '/'")
    return given


def env_name(value: Any) -> str:
    given = text(value)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", given):
        raise ValueError("must be the name of an environment variable")
    return given

"""Post dates as Jekyll reads them, made time-zone aware.

Jekyll accepts ``2025-09-07 08:26:39 +0000``, ``2025-09-07T08:26:39+09:00`` and
``2025-09-07``; a date without an offset is in the site's time zone. A strict
pattern is used rather than a lenient parser so that a typo is an error, not a
surprising date.

Pure: no I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache

__all__ = ["parse_date"]

_DATE = re.compile(
    r"""^\s*(\d{4})-(\d{1,2})-(\d{1,2})
    (?:[T\s]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?
       \s*(Z|z|[+-]\d{2}:?\d{2}|[+-]\d{2})?)?\s*$""",
    re.VERBOSE,
)
# Jekyll's own form, which most posts use: read by datetime.fromisoformat, whose
# checks are datetime's own, in a tenth of the time of the general pattern.
_JEKYLL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}")


def parse_date(value: object, tz: tzinfo) -> datetime:
    """Return ``value`` as an aware datetime; naive values are taken to be in ``tz``.

    Raises ValueError with a message fit to show the user.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(value, time(), tz)
    if not isinstance(value, str):
        raise ValueError(f"expected a date such as 2025-09-07 08:26:39 +0000, got {value!r}")
    if _JEKYLL.fullmatch(value):
        try:
            d = datetime.fromisoformat(value[:19])
            zone = _offset(value[20:])
        except ValueError:
            pass  # not a valid date: the general path below words the message
        else:
            # Built anew rather than with replace(), which is slower.
            return datetime(d.year, d.month, d.day, d.hour, d.minute, d.second, 0, zone)
    match = _DATE.match(value)
    if not match:
        raise ValueError(f"cannot read {value!r} as a date (use 2025-09-07 08:26:39 +0000)")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone = tz if offset is None else _offset(offset)
    micro = int((fraction or "0").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            zone,
        )
    except ValueError as exc:
        raise ValueError(f"cannot read {value!r} as a date: {exc}") from None


@lru_cache(maxsize=64)
def _offset(text: str) -> tzinfo:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"time zone offset {text!r} is out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))

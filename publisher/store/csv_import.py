"""Subscriber lists as CSV: text in, the rows it holds and the problems of the others out.

The format, read by ``publisher subscribers import`` and written by ``export``
(so an export can be imported again)::

    email,name,categories,status
    ann@example.com,Ann Lee,tech;life,active
    bob@example.com,,,

The header names the columns, in any order and any case; a file without a
header is read as ``email,name,categories``. ``categories`` are separated by
``;`` or ``|``; none means every category. ``name``, ``categories`` and
``status`` (default: active) may be left out; unknown columns are ignored
with a warning. Each bad row becomes one ``source:LINE: column: why``, with
LINE the line its record starts on; the same address twice (any case) keeps
the first row.

Pure: no I/O and no database (:func:`parse_csv` takes the text, not a file);
the checks are the store's own (:mod:`.addresses`, :mod:`.values`), so a row
that passes here is one ``add_subscriber`` takes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from publisher.errors import PublisherError
from publisher.mail.names import clean_name, name_problem
from publisher.store.addresses import email_problem, normalize_email
from publisher.store.values import SUBSCRIBER_STATUSES

__all__ = ["COLUMNS", "CsvResult", "CsvRow", "parse_csv", "split_categories"]

COLUMNS = ("email", "name", "categories", "status")
_SEPARATORS = re.compile(r"[;|]")


@dataclass(frozen=True)
class CsvRow:
    """One valid subscriber read from a CSV file, and the line it started on."""

    line: int
    email: str
    name: str
    categories: tuple[str, ...]
    status: str | None  # None: the column was absent or empty


@dataclass
class CsvResult:
    """What a CSV file holds: good rows, one problem line per bad row, warnings."""

    rows: list[CsvRow] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, message)
    warnings: list[str] = field(default_factory=list)


def split_categories(cell: str) -> tuple[str, ...]:
    """``"tech; life|travel"`` -> ("tech", "life", "travel")."""
    return tuple(dict.fromkeys(p.strip() for p in _SEPARATORS.split(cell) if p.strip()))


def _row_problem(values: dict[str, str]) -> tuple[str, str] | None:
    """The first (column, problem) of a row, or None if it can be imported."""
    address = values.get("email", "").strip()
    if not address:
        return "email", "is missing"
    problem = email_problem(address)
    if problem is not None:
        return "email", f"{address!r} {problem}"
    name = name_problem(values.get("name", ""))
    if name is not None:
        return "name", name
    text = values.get("categories", "")
    if "\n" in text or "\r" in text:
        return "categories", "must be one line"
    status = values.get("status", "").strip()
    if status and status not in SUBSCRIBER_STATUSES:
        return "status", f"{status!r} must be one of {', '.join(SUBSCRIBER_STATUSES)}"
    return None


def parse_csv(text: str, source: str) -> CsvResult:
    """Read subscriber rows from CSV text; every bad row becomes ``source:LINE: column: why``.

    The header names the columns (any order, any case); a file without a
    header is read as email,name,categories. Unknown columns are ignored with a
    warning, so exports from other tools can be imported as they are.
    PublisherError if the text is not CSV at all or names no ``email`` column.
    """
    result = CsvResult()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise PublisherError(f"{source}:1: not a CSV file: {exc}") from exc
    if header is None:
        return result
    names = [h.strip().lower() for h in header]
    if "email" in names:
        columns = names
        for index, name in enumerate(columns):
            if name not in COLUMNS:
                shown = header[index].strip()
                result.warnings.append(f"{source}:1: ignoring column {shown!r}")
        pending: list[tuple[int, list[str]]] = []
    elif header and "@" in header[0]:
        columns = list(COLUMNS[:3])
        pending = [(1, header)]  # no header: the first line is already a subscriber
    else:
        raise PublisherError(
            f"{source}:1: no 'email' column; the first line must name the columns,"
            f" such as {','.join(COLUMNS)}"
        )

    def records() -> Iterator[tuple[int, list[str]]]:
        yield from pending
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                result.problems.append((start, f"{source}:{start}: not valid CSV: {exc}"))
                return
            yield start, cells

    seen: dict[str, int] = {}  # address key -> the line it was first on
    for line, cells in records():
        if not any(c.strip() for c in cells):
            continue  # blank line
        if len(cells) > len(columns):
            extra = [c for c in cells[len(columns) :] if c.strip()]
            if extra:
                result.problems.append(
                    (
                        line,
                        f"{source}:{line}: {len(cells)} fields, but the header has {len(columns)}",
                    )
                )
                continue
        values = {
            name: cells[i] if i < len(cells) else ""
            for i, name in enumerate(columns)
            if name in COLUMNS
        }
        problem = _row_problem(values)
        if problem is not None:
            result.problems.append((line, f"{source}:{line}: {problem[0]}: {problem[1]}"))
            continue
        # The same person twice (any letter case): the first row is the one imported.
        key = normalize_email(values["email"]).lower()
        first = seen.setdefault(key, line)
        if first != line:
            result.problems.append(
                (
                    line,
                    f"{source}:{line}: email: duplicate of line {first};"
                    f" line {first}'s name and categories are kept",
                )
            )
            continue
        result.rows.append(
            CsvRow(
                line=line,
                email=values["email"].strip(),
                name=clean_name(values.get("name", "")),
                categories=split_categories(values.get("categories", "")),
                status=values.get("status", "").strip() or None,
            )
        )
    return result

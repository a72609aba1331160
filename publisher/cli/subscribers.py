"""``publisher subscribers add|list|remove|import|export``: the subscriber list by hand.

Argument handling and printing only; the rules (what is a valid address, who
is already subscribed) live in :mod:`publisher.store`, and reading the CSV
format of ``import`` and ``export`` in :mod:`publisher.store.csv_import`.
"""

from __future__ import annotations

import csv
import io
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from publisher.cli.main import SuggestingGroup
from publisher.errors import PublisherError, StoreError

if TYPE_CHECKING:
    from publisher.cli.main import State
    from publisher.store import Store, Subscriber

__all__ = ["subscribers"]


# --- commands -----------------------------------------------------------------------------


@contextmanager
def _store(state: State) -> Iterator[Store]:
    from publisher.store import Store

    with Store.open(state.config) as store:
        yield store


def _reject(message: str) -> None:
    """One line on stderr and exit 1: the command ran, but the input was refused."""
    from publisher.cli.main import EXIT_REJECTED, fail

    fail(message, EXIT_REJECTED)


def _utf8(_ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...]) -> object:
    """Refuse an argument that is not UTF-8, with one line and exit 2 (a bad argument).

    Python hands such bytes over as lone surrogates, which no database takes.
    """
    from publisher.cli.main import EXIT_UNUSABLE, fail

    for text in (value,) if isinstance(value, str) else value:
        if any("\ud800" <= c <= "\udfff" for c in text):
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            what = f"--{param.name}" if isinstance(param, click.Option) else str(param.name).upper()
            fail(
                f"{what} '{shown}': is not valid UTF-8"
                " (check the encoding of the terminal or script)",
                EXIT_UNUSABLE,
            )
    return value


# publisher.store.SUBSCRIBER_STATUSES, written out: importing the store loads
# SQLAlchemy, which every command would pay for at start-up (a test compares them).
_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
_SUPPRESSED = _STATUSES[3:]  # publisher.store.SUPPRESSED_STATUSES


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _describe(subscriber: Subscriber) -> str:
    cats = ", ".join(subscriber.categories) if subscriber.categories else "all categories"
    return f"{subscriber.email} ({subscriber.status}; {cats})"


@click.group(cls=SuggestingGroup)
def subscribers() -> None:
    """Add, list, remove, import and export the people who receive the digest."""


@subscribers.command()
@click.argument("email", callback=_utf8)
@click.option(
    "--name", default="", callback=_utf8, help="The subscriber's name, used in the greeting."
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    callback=_utf8,
    metavar="C",
    help="A category to follow; repeat for more. None: every category.",
)
@click.option(
    "--status",
    type=click.Choice(["active", "pending"]),
    default="active",
    show_default=True,
    help="pending: wait for the subscriber to confirm by mail.",
)
@click.option(
    "--force", is_flag=True, help="Add an address that bounced or complained, forgetting that."
)
@click.pass_obj
def add(
    state: State, email: str, name: str, categories: tuple[str, ...], status: str, force: bool
) -> None:
    """Add EMAIL to the subscribers. Exit 1 if it is invalid, already there or suppressed.

    The name is kept on one line: control characters become spaces, and a
    name with a line break in it is refused. An address suppressed by a hard
    bounce or a complaint is refused unless --force.
    """
    with _store(state) as store:
        known = store.get_subscriber(email) if force else None
        if known is not None and known.status in _SUPPRESSED:
            # The operator says the address works again (the mailbox was fixed).
            store.unsuppress(email)
            revived = store.set_status(known.id, status, now=state.clock())
            click.echo(f"revived {_describe(revived)}")
            return
        try:
            added = store.add_subscriber(
                email,
                name=name,
                categories=categories,
                status=status,
                now=state.clock(),
                force=force,
            )
        except StoreError as exc:
            _reject(str(exc))
    click.echo(f"added {_describe(added)}")


@subscribers.command(name="list")
@click.option(
    "--status",
    type=click.Choice(list(_STATUSES)),
    help="Only subscribers with this status.",
)
@click.pass_obj
def list_(state: State, status: str | None) -> None:
    """Show every subscriber: address, name, status, categories, date added.

    A bounced or complained address is followed by its reason and time.
    """
    zone = state.config.site.timezone
    with _store(state) as store:
        found = store.list_subscribers(status)
        why = {s.email.lower(): s for s in store.list_suppressions()}
    rows = [
        (
            s.email,
            s.name,
            s.status,
            "; ".join(s.categories) or "(all)",
            s.created_at.astimezone(zone).date().isoformat(),
        )
        for s in found
    ]
    if rows:
        table = [("EMAIL", "NAME", "STATUS", "CATEGORIES", "ADDED"), *rows]
        widths = [max(_width(r[i]) for r in table) for i in range(4)]
        for row in table:
            cells = [c + " " * (w - _width(c)) for c, w in zip(row, widths, strict=False)]
            click.echo("  ".join([*cells, row[4]]))
    for s in found:
        reason = why.get(s.email.lower())
        if reason is not None and s.status in _SUPPRESSED:
            at = reason.at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
            click.echo(f"  {s.email}: {reason.kind} {at}: {reason.reason}")
    order = ("active", "pending", "unsubscribed", "bounced", "complained")
    counts = {s: sum(1 for r in found if r.status == s) for s in order}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    noun = "subscriber" if len(found) == 1 else "subscribers"
    click.echo(f"{len(found)} {noun}" + (f": {summary}" if summary else ""))


@subscribers.command()
@click.argument("email", callback=_utf8)
@click.pass_obj
def remove(state: State, email: str) -> None:
    """Delete EMAIL and its send history. Exit 1 if it was not subscribed."""
    with _store(state) as store:
        removed = store.remove_subscriber(email)
    if not removed:
        _reject(f"{email.strip()}: not subscribed")
    click.echo(f"removed {email.strip()}")


@subscribers.command(name="import")
@click.argument("file", metavar="FILE.csv")
@click.option(
    "--status",
    type=click.Choice(["active", "pending"]),
    default=None,
    help="Status for rows without one (default: active).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Also add addresses that bounced or complained, and revive those on the list.",
)
@click.pass_obj
def import_(state: State, file: str, status: str | None, force: bool) -> None:
    """Add the subscribers in FILE.csv ('-': standard input), reporting each bad row.

    Columns: email,name,categories[,status]; categories separated by ';' or '|'.
    Good rows are imported even when others are bad; addresses already subscribed
    are left as they are. An address suppressed by a hard bounce or a complaint
    stays suppressed (its row is reported) unless --force. A row whose status is
    bounced or complained suppresses its address. Exit 1 if any row was bad.
    """
    from publisher.store.csv_import import parse_csv

    if file == "-":
        source, text = "<stdin>", sys.stdin.read()
    else:
        source = file
        try:
            text = Path(file).read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise PublisherError(f"{file}: no such file") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise PublisherError(f"{file}: cannot be read: {exc}") from exc
    parsed = parse_csv(text, source)
    for warning in parsed.warnings:
        click.echo(f"warning: {warning}", err=True)
    problems = list(parsed.problems)
    added = existing = 0
    now = state.clock()
    with _store(state) as store:
        for row in parsed.rows:
            wanted = row.status or status or "active"
            known = store.get_subscriber(row.email)
            if known is not None and force and known.status in _SUPPRESSED:
                # An operator's decision: the address is mailed again.
                store.unsuppress(row.email)
                store.set_status(known.id, "active" if wanted in _SUPPRESSED else wanted, now=now)
                added += 1
                continue
            if known is not None:
                existing += 1
                continue
            suppressed = wanted in _SUPPRESSED
            try:
                store.add_subscriber(
                    row.email,
                    name=row.name,
                    categories=row.categories,
                    status=wanted,
                    now=now,
                    force=force or suppressed,
                )
                if suppressed:  # an exported suppression, read back
                    store.suppress(row.email, wanted, f"imported from {source}", now=now)
            except StoreError as exc:
                problems.append((row.line, f"{source}:{row.line}: {exc}"))
                continue
            added += 1
    # Bad rows in file order, whichever check found them.
    for _, problem in sorted(problems):
        click.echo(problem, err=True)
    click.echo(
        f"imported {added} from {source}"
        + (f", {existing} already subscribed (left unchanged)" if existing else "")
        + (f", {len(problems)} rows rejected" if problems else "")
    )
    if problems:
        sys.exit(1)


@subscribers.command()
@click.option(
    "--status",
    type=click.Choice(list(_STATUSES)),
    help="Only subscribers with this status.",
)
@click.pass_obj
def export(state: State, status: str | None) -> None:
    """Write the subscribers as CSV to standard output, in the format import reads."""
    from publisher.store.csv_import import COLUMNS

    with _store(state) as store:
        found = store.list_subscribers(status)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in found:
        writer.writerow([s.email, s.name, ";".join(s.categories), s.status])
    click.echo(out.getvalue(), nl=False)

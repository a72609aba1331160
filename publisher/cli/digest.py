"""``publisher digest preview|send|retry|status|resolve``: argument handling and printing only.

The work is in :mod:`publisher.digest.send` and :mod:`publisher.digest.preview`; heavy
imports happen inside the commands so that other commands start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from publisher.cli.main import SuggestingGroup
from publisher.errors import PublisherError

if TYPE_CHECKING:
    from publisher.cli.main import State
    from publisher.config import Config
    from publisher.digest.period import Period
    from publisher.digest.preview import Preview
    from publisher.digest.report import SendReport
    from publisher.store import SenderRecord, Store

__all__ = ["digest"]


@click.group(cls=SuggestingGroup)
def digest() -> None:
    """Preview, send and inspect the email digest."""


def _current_period(config: Config, now: datetime) -> Period:
    from publisher.digest.period import period_at

    period = period_at(config, now)
    if period is None:
        raise PublisherError(f"digest.schedule {config.digest.schedule!r} has not fired yet")
    return period


def _period(config: Config, store: Store, key: str | None, now: datetime) -> Period:
    """The period named ``key`` (it must have a recorded run), or the current one."""
    from publisher.digest.period import Period

    if key is None:
        return _current_period(config, now)
    run = store.get_run(key)
    if run is None:
        raise PublisherError(f"digest {key}: no run recorded for this period")
    return Period(key, run.due_at.astimezone(config.site.timezone))


@contextmanager
def _locked_store(config: Config, busy: str, *, shared: bool = False) -> Iterator[Store]:
    """The digest lock (held by a send elsewhere: one line saying ``busy``, exit 2), then
    the store; every command that may change the ledger goes through it.

    With ``shared`` (a send) on a store where several senders may share a period
    (PostgreSQL), no file lock is taken: the senders of one machine, like those of
    several, share the period through the database's claims.
    """
    from publisher.schedule.lock import DIGEST_LOCK, StateLock, lock_path
    from publisher.store import Store

    with Store.open(config) as store:
        if shared and store.shared_senders:
            yield store
            return
        with StateLock(lock_path(config, DIGEST_LOCK), busy):
            yield store


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr, only for a person watching a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("sending", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def _preview(config: Config, now: datetime, email: str | None) -> Preview:
    """This period's digest as ``email`` gets it (None: a reader of every category)."""
    from publisher.digest.preview import preview_digest
    from publisher.store import Store

    if email is None:
        return preview_digest(config, now=now)
    with Store.open(config) as store:
        return preview_digest(config, now=now, store=store, email=email)


@digest.command()
@click.option("--subscriber", "email", metavar="EMAIL", help="Preview this subscriber's digest.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the HTML (default: digest-preview.html in the site folder).",
)
@click.pass_obj
def preview(state: State, email: str | None, out: Path | None) -> None:
    """Write the HTML and print the text of the current digest; send and record nothing.

    Without --subscriber, shows the digest of a new subscriber who follows every
    category. Links carry a fake token, so no secret is needed.
    """
    from publisher.build.output import atomic_write

    config = state.config
    now = state.clock()
    shown = _preview(config, now, email)
    if shown.rendered is None:
        click.echo(f"digest {shown.period.key}: nothing new for {shown.email}")
        sys.exit(0)
    target = out or config.paths.root / "digest-preview.html"
    atomic_write(target, shown.rendered.html.encode("utf-8"))
    click.echo(f"Subject: {shown.rendered.subject}\n")
    click.echo(shown.rendered.text, nl=False)
    size = len(shown.rendered.html.encode("utf-8"))
    click.echo(
        f"digest {shown.period.key}: {shown.posts} posts for {shown.email};"
        f" HTML written to {target}; HTML part {size:,} bytes"
        f" (digest.max_html_bytes {config.digest.max_html_bytes:,})",
        err=True,
    )


@digest.command()
@click.option("--dry-run", is_flag=True, help="Build every message but send and record nothing.")
@click.option("--period", "key", metavar="KEY", help="Resume an earlier period (e.g. 2026-W48).")
@click.option(
    "--late-ok",
    is_flag=True,
    help="Send the period even if it is more than digest.max_lateness late, or was skipped.",
)
@click.option(
    "--to",
    "to",
    metavar="ADDRESS",
    help="Test send: this period's digest to ADDRESS only, marked [test], recorded nowhere.",
)
@click.option(
    "--as",
    "as_email",
    metavar="SUBSCRIBER",
    help="With --to: the digest as this subscriber gets it (default: one following everything).",
)
@click.pass_obj
def send(
    state: State,
    dry_run: bool,
    key: str | None,
    late_ok: bool,
    to: str | None,
    as_email: str | None,
) -> None:
    """Send the current period's digest to every subscriber who has something new.

    Safe to run again: nobody gets the same digest twice. A period that was
    never started and is more than digest.max_lateness late is skipped, as
    `publisher run` would (a systemd timer with Persistent=true runs late after
    downtime); --late-ok sends it, once. Exit 1 if any message failed or is uncertain.

    With --to, sends only a test: the digest rendered as SUBSCRIBER (--as) would
    get it, to ADDRESS, through the configured backend; repeatable, and nothing
    is recorded.
    """
    from publisher.schedule.catchup import catch_up_decision

    if to is not None:
        if dry_run or key is not None or late_ok:
            raise click.UsageError(
                "--to sends a test of the current period: without --dry-run, --period or --late-ok"
            )
        _test_send(state, to, as_email)
        return
    if as_email is not None:
        raise click.UsageError("--as SUBSCRIBER goes with --to ADDRESS")
    config = state.config
    now = state.clock()
    with _locked_store(config, "a digest is being sent", shared=True) as store:
        period = _period(config, store, key, now)
        run = store.get_run(period.key)
        if run is not None and run.status == "skipped" and not late_ok:
            click.echo(f"digest {period.key}: skipped earlier: {run.note} (--late-ok sends it)")
            sys.exit(0)
        if key is None and not late_ok and not dry_run:
            decision = catch_up_decision(period, now, config.digest.max_lateness, run)
            if decision.action == "skip":
                store.skip_run(period.key, due_at=period.due, note=decision.reason, now=now)
                click.echo(f"digest {period.key}: skipped: {decision.reason} (--late-ok sends it)")
                sys.exit(0)
        report = _send(state, store, period, dry_run=dry_run, late_ok=late_ok)
    _exit_with(report, state.config)


def _test_send(state: State, to: str, as_email: str | None) -> NoReturn:
    """Send this period's digest to ``to`` only, as ``as_email`` would get it; record nothing."""
    from email.utils import parseaddr

    from publisher.digest.preview import trial_message
    from publisher.errors import SendError
    from publisher.mail import make_backend

    address = parseaddr(to)[1]
    if not address or "@" not in address or address != to.strip():
        raise click.BadParameter(f"{to!r} is not an email address", param_hint="--to")
    config = state.config
    now = state.clock()
    shown = _preview(config, now, as_email)
    if shown.rendered is None:
        click.echo(f"digest {shown.period.key}: nothing new for {shown.email}; nothing sent")
        sys.exit(0)
    message = trial_message(config, shown, address, now)
    try:
        with make_backend(config) as backend:
            backend.send(message)
    except SendError as exc:
        click.echo(f"digest {shown.period.key}: test to {address} not sent: {exc}", err=True)
        sys.exit(1)
    size = len(message.data())
    click.echo(
        f"digest {shown.period.key}: test sent to {address} as {shown.email}"
        f" ({shown.posts} posts, {size:,} bytes); nothing recorded"
    )
    sys.exit(0)


#: Past this share of complaints among a period's delivered messages, Gmail and Yahoo
#: start refusing a sender's bulk mail (their 2024 sender rules).
COMPLAINT_RATE_LIMIT = 0.003


def _echo_bounces(key: str, counts: dict[str, int], sent: Callable[[], int]) -> None:
    """The period's bounces and complaints (``counts``), and a warning past the
    complaint-rate limit; ``sent`` counts its delivered messages, asked only if needed."""
    if not any(counts.values()):
        return
    delivered = sent()
    rate = counts["complaint"] / delivered if delivered else 0.0
    click.echo(
        f"bounces: {counts['hard']} hard, {counts['soft']} soft;"
        f" complaints: {counts['complaint']} ({rate:.2%} of {delivered} sent)"
    )
    if rate > COMPLAINT_RATE_LIMIT:
        click.echo(
            f"warning: digest {key}: complaint rate {rate:.2%} is above 0.3%:"
            " Gmail and Yahoo may refuse or spam-folder this sender's mail",
            err=True,
        )


def _echo_senders(
    senders: list[SenderRecord], lease: timedelta, now: datetime, zone: tzinfo
) -> None:
    """One line per sender process of the period: what it claimed and did, when last seen.

    A sender unseen for longer than its lease, and not finished, was most likely
    killed: its unbegun rows are free for the others.
    """
    if len(senders) < 2 and not any(s.finished_at is None for s in senders):
        return  # a single sender that finished: the counts above say it all
    for s in senders:
        if s.finished_at is not None:
            state = f"finished {s.finished_at.astimezone(zone).isoformat()}"
        elif now - s.last_seen > lease:
            state = f"silent since {s.last_seen.astimezone(zone).isoformat()} (stopped?)"
        else:
            state = f"sending, last seen {s.last_seen.astimezone(zone).isoformat()}"
        click.echo(
            f"sender {s.worker}: claimed {s.claimed}, sent {s.sent}, failed {s.failed},"
            f" uncertain {s.uncertain}; {state}"
        )


def _exit_with(report: SendReport, config: Config | None = None) -> NoReturn:
    """Print a send's problems and closing line; exit 1 if anything failed or is uncertain."""
    for line in report.problems:
        click.echo(line, err=True)
    click.echo(report.summary())
    if config is not None and report.period:
        from publisher.store import Store

        with Store.open(config) as store:
            key = report.period
            _echo_bounces(key, store.bounce_counts(key), lambda: len(store.ledger(key, "sent")))
    sys.exit(0 if report.ok else 1)


def _send(
    state: State, store: Store, period: Period, *, dry_run: bool = False, late_ok: bool = False
) -> SendReport:
    """Send (or, dry, only build) the digest of ``period``; the caller holds the lock."""
    from publisher.digest.send import send_digest
    from publisher.mail import make_backend
    from publisher.mail.tokens import load_secret

    config = state.config
    now = state.clock()
    secret = load_secret(config)
    backend = make_backend(config)
    if dry_run:
        return send_digest(
            config, store, backend, now=now, period=period, dry_run=True, secret=secret
        )
    with _progress(sys.stderr.isatty()) as on_progress, backend:
        return send_digest(
            config,
            store,
            backend,
            now=now,
            period=period,
            on_progress=on_progress,
            secret=secret,
            clock=state.clock,
            late_ok=late_ok,
        )


@digest.command()
@click.argument("emails", nargs=-1, metavar="[EMAIL]...")
@click.option("--period", "key", metavar="KEY", help="The digest period (default: current).")
@click.pass_obj
def retry(state: State, emails: tuple[str, ...], key: str | None) -> None:
    """Send the failed messages of a period again, once their cause is fixed.

    A failed message was refused for good (a 5xx reply, a header that could not
    be made) and is never retried by itself. After fixing the cause (a post's
    title, the recipient's mailbox), this puts the period's failed messages (of
    EMAIL only, if given) back to pending and sends them, as `digest send
    --period KEY` would. A 5xx suppressed its address: only naming it (EMAIL)
    says its mailbox works again and mails it. Exit 1 if any message failed or
    is uncertain.
    """
    from publisher.store import SUPPRESSED_STATUSES

    config = state.config
    now = state.clock()
    with _locked_store(config, "a digest is being sent; retry after it") as store:
        period = _period(config, store, key, now)
        ids: list[int] | None = None
        if emails:
            ids = []
            for email in emails:
                subscriber = store.get_subscriber(email)
                if subscriber is None:
                    raise PublisherError(f"{email}: no such subscriber")
                if subscriber.status in SUPPRESSED_STATUSES:
                    # Named by the operator: its mailbox works again.
                    store.unsuppress(email)
                    store.set_status(subscriber.id, "active", now=now)
                    click.echo(f"{subscriber.email}: was {subscriber.status}; mailed again")
                ids.append(subscriber.id)
        else:
            left = sum(len(store.list_subscribers(s)) for s in SUPPRESSED_STATUSES)
            if left:
                click.echo(
                    f"digest {period.key}: {left} suppressed addresses left out"
                    " (name them to retry: their mailbox must work again)"
                )
        if store.get_run(period.key) is None:
            raise PublisherError(f"digest {period.key}: nothing was sent for it; nothing to retry")
        count = store.retry_failed(
            period.key, now=now, subscriber_ids=ids, skip_statuses=SUPPRESSED_STATUSES
        )
        click.echo(f"digest {period.key}: {count} failed messages back to pending")
        if not count:
            sys.exit(0)
        report = _send(state, store, period)
    _exit_with(report, state.config)


@digest.command()
@click.option("--period", "key", metavar="KEY", help="The period to show (default: current).")
@click.pass_obj
def status(state: State, key: str | None) -> None:
    """Show the send ledger of a period: counts by status, uncertain and failed messages."""
    from publisher.store import LEDGER_STATUSES, Store

    config = state.config
    with Store.open(config) as store:
        key = key or _current_period(config, state.clock()).key
        run = store.get_run(key)
        rows = store.ledger(key)
        bounces = store.bounce_counts(key)
        senders = store.senders(key)
    if run is None and not rows:
        click.echo(f"digest {key}: nothing recorded")
        return
    zone = config.site.timezone
    if run is not None:
        finished = run.finished_at.astimezone(zone).isoformat() if run.finished_at else "-"
        click.echo(
            f"digest {key}: run {run.status}, due {run.due_at.astimezone(zone).isoformat()},"
            f" finished {finished}" + (f" ({run.note})" if run.note else "")
        )
    names = {"sending": "uncertain"}
    counts = ", ".join(
        f"{names.get(s, s)} {sum(1 for r in rows if r.status == s)}" for s in LEDGER_STATUSES
    )
    click.echo(f"messages: {len(rows)} ({counts})")
    # Whether a sender went silent is a matter of real time, whatever --now says.
    _echo_senders(senders, config.digest.lease, datetime.now(UTC), zone)
    _echo_bounces(key, bounces, lambda: sum(1 for r in rows if r.status == "sent"))
    for row in rows:
        if row.status == "sending":
            click.echo(
                f"uncertain: {row.email} (attempts {row.attempts},"
                f" since {row.updated_at.astimezone(zone).isoformat()}):"
                f" resolve with: publisher digest resolve {row.email} --period {key}"
                " --sent|--not-sent"
            )
        elif row.status == "failed":
            click.echo(f"failed: {row.email}: {row.error}")
        elif row.status == "pending" and row.error:
            click.echo(f"pending: {row.email}: {row.error}")


@digest.command()
@click.argument("email")
@click.option("--period", "key", metavar="KEY", help="The digest period (default: current).")
@click.option(
    "--sent/--not-sent",
    "sent",
    default=None,
    help="The message did arrive (record it) / did not (send it on the next run).",
)
@click.pass_obj
def resolve(state: State, email: str, key: str | None, sent: bool | None) -> None:
    """Decide about an uncertain message, after checking whether it arrived."""
    if sent is None:
        raise click.UsageError("say what happened: --sent or --not-sent")
    config = state.config
    now = state.clock()
    # While a send runs, a message in "sending" may just be on its way: not a
    # question for the operator yet.
    with _locked_store(config, "a digest is being sent; resolve after it") as store:
        key = key or _current_period(config, now).key
        subscriber = store.get_subscriber(email)
        if subscriber is None:
            raise PublisherError(f"{email}: no such subscriber")
        rows = [r for r in store.ledger(key) if r.subscriber_id == subscriber.id]
        if not rows:
            raise PublisherError(f"{email}: no message in digest {key}")
        row = rows[0]
        if row.status == "failed":
            raise PublisherError(
                f"{email}: the digest {key} message failed ({row.error}), it is not uncertain;"
                f" once the cause is fixed, send it again with:"
                f" publisher digest retry {email} --period {key}"
            )
        if row.status != "sending":
            raise PublisherError(
                f"{email}: the digest {key} message is {row.status}, not uncertain;"
                " nothing to resolve"
            )
        store.resolve(row.id, sent=sent, now=now)
    if sent:
        click.echo(f"{email}: digest {key} recorded as sent")
    else:
        click.echo(
            f"{email}: digest {key} will be sent again by: publisher digest send --period {key}"
        )

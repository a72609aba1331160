"""``publisher bounces scan MAILDIR``: bounces and complaints in, addresses suppressed.

Reads each new message of the bounce mailbox (a Maildir), ties it to a ledger
row by its VERP return path (or to an address by the report's own fields),
applies it (a hard bounce or a complaint suppresses the address, a soft bounce
counts towards ``bounces.soft_limit``) and only then moves the file to
``cur/``, so that nothing is counted twice and a crash loses nothing (a file
applied but not yet moved is applied again: harmless for a suppression).
Messages that are neither stay in ``new/`` for a person to read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from publisher.cli.main import SuggestingGroup
from publisher.errors import PublisherError

if TYPE_CHECKING:
    from publisher.cli.main import State

__all__ = ["bounces"]


@click.group(cls=SuggestingGroup)
def bounces() -> None:
    """Read bounces and complaints, and suppress the addresses they name."""


@bounces.command()
@click.argument("maildir", type=click.Path(path_type=Path))
@click.pass_obj
def scan(state: State, maildir: Path) -> None:
    """Apply every bounce and complaint in MAILDIR/new, then move it to MAILDIR/cur."""
    from publisher.digest.bounces import apply_bounce
    from publisher.mail.bounces import read_bounce
    from publisher.mail.tokens import load_secret
    from publisher.store import Store

    config = state.config
    new, cur = maildir / "new", maildir / "cur"
    if not new.is_dir():
        raise PublisherError(f"{maildir}: not a Maildir (no new/ folder)")
    cur.mkdir(exist_ok=True)
    secret = load_secret(config) if config.digest.bounce_address else None
    counts = {"hard": 0, "soft": 0, "complaint": 0, "suppressed": 0, "unknown": 0}
    now = state.clock()
    with Store.open(config) as store:
        for name in sorted(os.listdir(new)):
            path = new / name
            if name.startswith(".") or not path.is_file():
                continue
            bounce = read_bounce(path.read_bytes())
            applied = None
            if bounce is not None:
                applied = apply_bounce(
                    config,
                    store,
                    secret,
                    kind=bounce.kind,
                    recipient=bounce.recipient,
                    reason=bounce.reason,
                    return_paths=bounce.return_paths,
                    now=now,
                )
            if bounce is None or applied is None:
                counts["unknown"] += 1
                click.echo(
                    f"{path}: not a bounce or complaint publisher understands; left", err=True
                )
                continue
            counts[bounce.kind] += 1
            counts["suppressed"] += applied.suppressed
            click.echo(f"{applied.email}: {bounce.kind}: {bounce.reason}")
            os.replace(path, cur / (name if ":2," in name else f"{name}:2,S"))
    click.echo(
        f"bounces: {counts['hard']} hard, {counts['soft']} soft, {counts['complaint']}"
        f" complaints; {counts['suppressed']} addresses suppressed;"
        f" {counts['unknown']} not understood (left in {new})"
    )
    sys.exit(0)

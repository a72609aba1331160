"""Digest runs: one row per period, saying when it was due and how its sending went.

:class:`RunOps` is that part of :class:`~publisher.store.Store`. A period's
run is recorded once (the first writer wins, so two schedulers never both
start it) and updated as the send goes on; the scheduler reads it to decide
what is due. Never touches subscribers or the ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.store.database import Conflict, Database
from publisher.store.schema import as_run, runs_table
from publisher.store.values import RUN_STATUSES, DigestRun, check_choice

__all__ = ["RunOps"]

_LATEST_FIRST = (runs_table.c.due_at.desc(), runs_table.c.started_at.desc())


def _by_digest(digest: str) -> sa.Select[Any]:
    return sa.select(runs_table).where(runs_table.c.digest == digest)


class RunOps(Database):
    """The record of every digest period: started, skipped, done or failed."""

    def start_run(self, digest: str, *, due_at: datetime, now: datetime) -> DigestRun:
        """Record that the run for this period started; if it exists, return it unchanged."""
        return self._insert_run(
            digest, due_at=due_at, started_at=now, finished_at=None, status="running", note=""
        )

    def skip_run(self, digest: str, *, due_at: datetime, note: str, now: datetime) -> DigestRun:
        """Record in one transaction that this period is skipped; an existing run wins.

        One write, not start_run then finish_run: a process killed between the
        two would leave a "running" period that the next start would send late.
        """
        return self._insert_run(
            digest, due_at=due_at, started_at=now, finished_at=now, status="skipped", note=note
        )

    def reopen_run(self, digest: str, *, now: datetime) -> DigestRun:
        """A skipped period becomes running again, to be sent late (``--late-ok``).

        Only a skipped run is reopened; a run in any other status is returned
        as it is, so asking twice never plans a period twice.
        """
        with self._tx(write=True) as conn:
            conn.execute(
                runs_table.update()
                .where((runs_table.c.digest == digest) & (runs_table.c.status == "skipped"))
                .values(status="running", started_at=now, finished_at=None, note="")
            )
            row = conn.execute(_by_digest(digest)).first()
        if row is None:
            raise StoreError(f"digest {digest}: no run was recorded")
        return as_run(row)

    def _insert_run(self, digest: str, **values: Any) -> DigestRun:
        """Insert the period's run row unless one exists; either way return the row."""
        for _attempt in range(2):
            try:
                with self._tx(write=True) as conn:
                    found = conn.execute(_by_digest(digest)).first()
                    if found is not None:
                        return as_run(found)
                    conn.execute(
                        runs_table.insert().values(
                            digest=digest, sent=0, skipped=0, failed=0, uncertain=0, **values
                        )
                    )
                    return as_run(conn.execute(_by_digest(digest)).one())
            except Conflict:
                continue  # another process recorded this period first: theirs stands
        raise StoreError(f"digest {digest}: cannot record the run (conflicting writers)")

    def finish_run(
        self,
        digest: str,
        *,
        status: str,
        sent: int,
        skipped: int,
        failed: int,
        uncertain: int,
        note: str = "",
        now: datetime,
    ) -> None:
        """Record how a run ended (or, with status "running", its progress so far)."""
        check_choice(status, RUN_STATUSES, "run status")
        with self._tx(write=True) as conn:
            result = conn.execute(
                runs_table.update()
                .where(runs_table.c.digest == digest)
                .values(
                    status=status,
                    sent=sent,
                    skipped=skipped,
                    failed=failed,
                    uncertain=uncertain,
                    note=note,
                    finished_at=None if status == "running" else now,
                )
            )
            if result.rowcount != 1:
                raise StoreError(f"digest {digest}: no run was started")

    def get_run(self, digest: str) -> DigestRun | None:
        """The run of this period, or None if it never started."""
        with self._tx() as conn:
            row = conn.execute(_by_digest(digest)).first()
        return None if row is None else as_run(row)

    def last_run(self) -> DigestRun | None:
        """The run with the latest due time, or None."""
        with self._tx() as conn:
            row = conn.execute(sa.select(runs_table).order_by(*_LATEST_FIRST)).first()
        return None if row is None else as_run(row)

    def list_runs(self) -> list[DigestRun]:
        """Every run, latest due first."""
        with self._tx() as conn:
            return [
                as_run(row) for row in conn.execute(sa.select(runs_table).order_by(*_LATEST_FIRST))
            ]

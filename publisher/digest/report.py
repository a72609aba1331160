"""What one ``send_digest`` call did: counts, problems, and why it stopped early.

A plain record, filled in by :mod:`publisher.digest.send` and its sender
threads (:mod:`publisher.digest.deliver`) and printed by ``publisher digest
send``. No I/O, and never the period's totals: those are in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SendReport"]


@dataclass
class SendReport:
    """What one ``send_digest`` call did (not the period's totals: see the ledger)."""

    period: str
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    uncertain: int = 0
    stopped: str = ""  # why the run stopped early, or ""
    problems: list[str] = field(default_factory=list)  # one line per failed/uncertain message
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing is uncertain and the run was not stopped."""
        return not (self.failed or self.uncertain or self.stopped)

    def summary(self) -> str:
        """The closing line of ``publisher digest send``."""
        verb = "would send" if self.dry_run else "sent"
        line = (
            f"digest {self.period or '-'}: {verb} {self.sent}, skipped {self.skipped},"
            f" failed {self.failed}, uncertain {self.uncertain}"
        )
        return line + (f"; stopped: {self.stopped}" if self.stopped else "")

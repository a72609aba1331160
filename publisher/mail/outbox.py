"""The outbox backend: every message becomes an ``.eml`` file in a folder.

The default, because it needs no server: a site owner can read what would be
sent, and a separate tool (or a person) can deliver the files. Each file is
written atomically, so a mail program watching the folder never picks up half a
message. The file is named after the Message-ID, so sending the same message
again replaces its file instead of adding a second one. Files are private to
their owner (mode 0600, a new folder 0700): they hold readers' addresses and
personal links.

What it must never do: write a file outside its folder, or one that others may read.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import TracebackType

from publisher.build.output import atomic_write
from publisher.errors import TemporarySendError
from publisher.mail.base import Message, PreparedMessage, envelope, wire_bytes

__all__ = ["OutboxBackend"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")


def file_name(message: Message, data: bytes) -> str:
    """A safe file name for the message: from its Message-ID, else a hash of its bytes."""
    if isinstance(message, PreparedMessage):
        message_id = message.message_id.strip().strip("<>")
    else:
        message_id = str(message.get("Message-ID", "")).strip().strip("<>")
    stem = _UNSAFE.sub("_", message_id).strip("._")
    if not stem:
        return hashlib.sha256(data).hexdigest()[:32] + ".eml"
    if len(stem) > 150:
        # Keep names within every file system's limit, still unique per Message-ID.
        stem = stem[:100] + "-" + hashlib.sha256(message_id.encode()).hexdigest()[:16]
    return stem + ".eml"


class OutboxBackend:
    """Writes each message atomically as ``<folder>/<Message-ID>.eml``."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[Path] = []

    def __enter__(self) -> OutboxBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def send(self, message: Message) -> None:
        """Write the message; TemporarySendError if the disk refuses (full, read-only)."""
        _, recipients = envelope(message)
        # Unix line ends, like every other mail file on the system: mail tools
        # and Python's email parser read them without stray carriage returns.
        # A prepared message keeps its 8-bit parts: files have no transport to
        # protect them from, and mail programs read 8bit.
        data = wire_bytes(message, linesep="\n")
        target = self.folder / file_name(message, data)
        try:
            if not self.folder.exists():
                self.folder.mkdir(parents=True, mode=0o700, exist_ok=True)
            # Only the owner may read: a message holds an address and the personal
            # unsubscribe and preferences links of its reader.
            atomic_write(target, data, mode=0o600)
        except OSError as exc:
            raise TemporarySendError(
                f"{', '.join(recipients)}: cannot write {target}: {exc.strerror or exc}"
            ) from exc
        self.written.append(target)

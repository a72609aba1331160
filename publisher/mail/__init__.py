"""Mail: the message's headers and the backends that hand messages over.

Backends: outbox (files), smtp (a server), memory (tests); pick one with
:func:`make_backend`; every one implements :class:`~publisher.mail.base.Backend`.
:mod:`.headers` makes header values safe (shared by digests and confirmation
emails), :mod:`.names` cleans people's display names, :mod:`.tokens` signs the
links a message carries. Nothing here imports the store, the digest or the web.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from publisher.errors import ConfigError
from publisher.mail.base import Backend, envelope, wire_bytes
from publisher.mail.memory import MemoryBackend
from publisher.mail.outbox import OutboxBackend
from publisher.mail.smtp import SmtpBackend

if TYPE_CHECKING:
    from publisher.config import Config

__all__ = [
    "BACKENDS",
    "Backend",
    "MemoryBackend",
    "OutboxBackend",
    "SmtpBackend",
    "envelope",
    "make_backend",
    "wire_bytes",
]

BACKENDS = ("outbox", "smtp", "memory")


def make_backend(config: Config, *, name: str | None = None) -> Backend:
    """The backend named ``name``, or by ``digest.backend`` in the config.

    With ``dkim.selector`` set, every message it sends is DKIM-signed first
    (:mod:`.dkim`).
    """
    from publisher.mail.dkim import signing

    chosen = name or config.digest.backend
    backend: Backend
    if chosen == "outbox":
        backend = OutboxBackend(config.paths.outbox)
    elif chosen == "smtp":
        backend = SmtpBackend(config.smtp)
    elif chosen == "memory":
        backend = MemoryBackend()
    else:
        raise ConfigError([f"digest.backend: must be one of {', '.join(BACKENDS)}, got {chosen!r}"])
    return signing(config, backend)

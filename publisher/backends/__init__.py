"""Ways of sending a message: outbox (files), smtp (a server), memory (tests).

Pick one with :func:`make_backend`; every one implements
:class:`~publisher.backends.base.Backend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from publisher.backends.base import Backend, envelope, wire_bytes
from publisher.backends.memory import MemoryBackend
from publisher.backends.outbox import OutboxBackend
from publisher.backends.smtp import SmtpBackend
from publisher.errors import ConfigError

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
    """The backend named ``name``, or by ``digest.backend`` in the config."""
    chosen = name or config.digest.backend
    if chosen == "outbox":
        return OutboxBackend(config.paths.outbox)
    if chosen == "smtp":
        return SmtpBackend(config.smtp)
    if chosen == "memory":
        return MemoryBackend()
    raise ConfigError([f"digest.backend: must be one of {', '.join(BACKENDS)}, got {chosen!r}"])

"""Mail: the message's headers and the backends that hand messages over.

Backends: outbox (files), smtp (a server), postmark (Postmark's batch API),
memory (tests); pick one with
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

BACKENDS = ("outbox", "smtp", "postmark", "memory")


def make_backend(config: Config, *, name: str | None = None) -> Backend:
    """The backend named ``name``, or by ``digest.backend`` in the config.

    With ``dkim.selector`` set, every message it sends is DKIM-signed first
    (:mod:`.dkim`), except through Postmark, which builds the message and signs
    it itself. Raises SendError when the Postmark token is not in the environment.
    """
    from publisher.mail.dkim import signing

    chosen = name or config.digest.backend
    backend: Backend
    if chosen == "outbox":
        backend = OutboxBackend(config.paths.outbox)
    elif chosen == "smtp":
        backend = SmtpBackend(config.smtp)
    elif chosen == "postmark":
        return _postmark(config)
    elif chosen == "memory":
        backend = MemoryBackend()
    else:
        raise ConfigError([f"digest.backend: must be one of {', '.join(BACKENDS)}, got {chosen!r}"])
    return signing(config, backend)


def _postmark(config: Config) -> Backend:
    """The Postmark backend of ``config.postmark``, its token read from the environment."""
    import os

    from publisher.errors import SendError
    from publisher.mail.postmark import PostmarkBackend
    from publisher.mail.ratelimit import LocalRateLimiter

    settings = config.postmark
    token = os.environ.get(settings.token_env, "")
    if not token.strip():
        raise SendError(
            f"postmark: no server token: set the environment variable {settings.token_env}"
            " (postmark.token_env) to the server's API token"
        )
    backend = PostmarkBackend(
        token,
        base_url=settings.url,
        message_stream=settings.message_stream,
        batch_size=settings.batch_size,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )
    if settings.rate_limit > 0:
        # This process's share; senders sharing a period get the period's schedule instead.
        backend.limiter = LocalRateLimiter(settings.rate_limit)
    return backend

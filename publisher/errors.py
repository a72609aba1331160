"""The one exception hierarchy of publisher.

Every error a user can cause is a subclass of :class:`PublisherError`, so the
command line can print it as one line and choose an exit code without a
traceback::

    PublisherError
    ├── ConfigError        config.yaml is unreadable or invalid (all problems at once)
    ├── PostError          one post cannot be read (path:line:col: field: message)
    ├── OutputError        a target path is unsafe or claimed twice
    ├── StoreError         the subscriber store or send ledger refused an operation
    │   └── LockError      another process holds the state lock
    ├── TokenError         a signed link token is forged, altered or for another purpose
    ├── UsageError         a command's arguments cannot be used (a missing option, a file
    │                      that exists and would be overwritten)
    └── SendError          a backend could not hand over a message
        ├── TemporarySendError   worth retrying (4xx, dropped connection before DATA)
        ├── PermanentSendError   not worth retrying for this recipient (5xx)
        └── UncertainSendError   connection lost after DATA: delivery unknown, never retried

Pure: no I/O, and imports nothing of publisher.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "LockError",
    "OutputError",
    "PermanentSendError",
    "PostError",
    "PublisherError",
    "SendError",
    "StoreError",
    "TemporarySendError",
    "TokenError",
    "UncertainSendError",
    "UsageError",
]


class PublisherError(Exception):
    """Base of every error publisher reports to its user."""


class ConfigError(PublisherError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], source: str = "config.yaml") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str], str]]:
        # Raised in a build's worker process, it is pickled back to the parent;
        # the default would call __init__ with the joined message only.
        return (ConfigError, (self.problems, self.source))


class PostError(PublisherError):
    """A post cannot be used; the message names file, line, column and field."""

    def __init__(
        self, path: str, message: str, line: int = 1, col: int = 1, field: str = ""
    ) -> None:
        self.path = path
        self.line = line
        self.col = col
        self.field = field
        self.message = message
        where = f"{path}:{line}:{col}: "
        super().__init__(where + (f"{field}: " if field else "") + message)

    def __reduce__(self) -> tuple[type[PostError], tuple[str, str, int, int, str]]:
        # Rejected posts are kept in the build cache; the default pickling of an
        # exception would call __init__ with the formatted message only.
        return (PostError, (self.path, self.message, self.line, self.col, self.field))


class OutputError(PublisherError):
    """A file would be written outside the output folder, or twice in one build."""


class StoreError(PublisherError):
    """The subscriber store or send ledger cannot do what was asked."""


class LockError(StoreError):
    """Another publisher process holds the lock on this site's state."""


class TokenError(PublisherError):
    """A signed link token (unsubscribe, preferences, confirm) is not valid."""


class UsageError(PublisherError):
    """A command cannot do what its arguments ask; the message names the option to fix.

    Such as ``publisher init`` without ``--title`` where it cannot ask, or ``publisher
    new`` for a post file that already exists. Never a traceback: the user typed it.
    """


class SendError(PublisherError):
    """A message could not be handed to its backend."""


class TemporarySendError(SendError):
    """A failure that may pass: a 4xx reply or a connection lost before DATA."""


class PermanentSendError(SendError):
    """A failure that will not pass for this recipient, such as a 5xx reply."""


class UncertainSendError(SendError):
    """The connection was lost after the message was handed over: it may have arrived.

    Retrying could deliver it twice, so the message is left for an operator to resolve.
    """

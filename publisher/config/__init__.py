"""The settings: typed, validated values read from ``config.yaml``, the shared vocabulary.

:mod:`.model` holds the dataclasses every part reads, :mod:`.checks` the
checks of single values, :mod:`.load` reads the file and names every problem
by its key. Imports nothing of publisher but :mod:`publisher.errors`.
"""

from publisher.config.load import load_config, parse_config, secret_from_env
from publisher.config.model import (
    DEFAULT_PERMALINK,
    FEED_FORMATS,
    Config,
    DigestConfig,
    FeedsConfig,
    PathsConfig,
    ServerConfig,
    SiteConfig,
    SmtpConfig,
    StoreConfig,
)

__all__ = [
    "DEFAULT_PERMALINK",
    "FEED_FORMATS",
    "Config",
    "DigestConfig",
    "FeedsConfig",
    "PathsConfig",
    "ServerConfig",
    "SiteConfig",
    "SmtpConfig",
    "StoreConfig",
    "load_config",
    "parse_config",
    "secret_from_env",
]

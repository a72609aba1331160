"""publisher: RSS, Atom and JSON feeds and email digests from Jekyll-style Markdown posts."""

__version__ = "0.1.0"
__all__ = ["__version__"]

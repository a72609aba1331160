"""publisher: RSS, Atom and JSON feeds and email digests from Jekyll-style Markdown posts.

Holds the version only: importing the package loads none of its parts.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

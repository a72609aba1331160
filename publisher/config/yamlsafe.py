"""The safe YAML loader to use: libyaml's (C, several times faster) when PyYAML has it.

PyYAML can be built without libyaml (some distributions' packages, a source
install without the headers); it then lacks ``CSafeLoader``, and the pure
Python ``SafeLoader`` reads the same YAML.

Never hands out a loader that can build arbitrary Python objects.
"""

from __future__ import annotations

__all__ = ["SafeLoader"]

try:
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # PyYAML without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]

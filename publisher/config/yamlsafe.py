"""The safe YAML loader to use: libyaml's (C, several times faster) when PyYAML has it,
and strings written so that it reads them back as they were.

PyYAML can be built without libyaml (some distributions' packages, a source
install without the headers); it then lacks ``CSafeLoader``, and the pure
Python ``SafeLoader`` reads the same YAML.

Never hands out a loader that can build arbitrary Python objects.
"""

from __future__ import annotations

import yaml

__all__ = ["SafeLoader", "quoted", "scalar"]

try:
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # PyYAML without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]


def _escape(char: str) -> str:
    code = ord(char)
    if char in '"\\':
        return "\\" + char
    # YAML readers refuse these raw (C0 and C1 controls, DEL, U+FFFE, U+FFFF), and a raw
    # line or paragraph separator would end the line; escaped, they read back as given.
    if code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029, 0xFFFE, 0xFFFF):
        return f"\\u{code:04x}"
    return char


def quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar, which every YAML reader reads back as ``text``."""
    return '"' + "".join(map(_escape, text)) + '"'


def scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when YAML reads it back as this string, else quoted.

    ``My Site`` stays as it is; ``yes``, ``10``, ``a: b`` and ``a #b`` are quoted.
    """
    try:
        plain = yaml.load(f"k: {text}", Loader=SafeLoader)
    except yaml.YAMLError:
        plain = None
    return text if text and plain == {"k": text} else quoted(text)

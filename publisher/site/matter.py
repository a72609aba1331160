"""Front matter: finding it in a post's bytes and loading its YAML.

PyYAML (through python-frontmatter's handler and libyaml's CSafeLoader, where
PyYAML has libyaml) is the reference reader. Building Python objects in PyYAML
still costs about 60 µs a post, which is most of a cold build at ten thousand
posts, so flat front matter of the everyday shape (``key: value`` lines,
quoted strings, flow lists of names) is read by a fast path. The fast path
decides nothing itself: plain scalars are typed by PyYAML's own resolver and
constructor, and any line it is not sure of sends the whole block to PyYAML.
The test suite checks that both readers agree.

Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from frontmatter.default_handlers import YAMLHandler

from publisher.config.yamlsafe import SafeLoader

__all__ = ["MatterError", "load_matter", "split_matter"]

_FENCE = re.compile(rb"^(---|\.\.\.)[ \t]*\r?$", re.MULTILINE)
# The closing fence, found from its newline: a search for a literal first byte
# skips ahead, where "^" in multiline mode is tried at every byte.
_CLOSING = re.compile(rb"\n(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)
# A front matter needs a few dozen YAML nodes; an alias bomb needs billions.
_MAX_NODES = 10_000


class MatterError(ValueError):
    """The front matter is missing or not valid YAML; line and column are 1-based."""

    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


class _Loader(SafeLoader):
    """YAML loader that keeps timestamps as text so that one strict parser reads every date."""


def _timestamp_as_text(loader: yaml.BaseLoader, node: yaml.Node) -> str:
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
_YAML = YAMLHandler()


class _ScalarConstructor(yaml.constructor.SafeConstructor):
    """PyYAML's own typing of plain scalars (ints, bools, nulls, floats) for the fast path."""


_ScalarConstructor.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
_RESOLVER = yaml.resolver.Resolver()
_IMPLICIT = _RESOLVER.yaml_implicit_resolvers  # first character -> [(tag, pattern)]
_CONSTRUCTOR = _ScalarConstructor()
_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Plain scalar types the fast path builds; any other tag (such as "=") is PyYAML's.
_TYPED = {
    _STR,
    _TIMESTAMP,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_PLAIN_KEYS: set[str] = set()  # keys already known to resolve to strings
_KEYS_LIMIT = 1000
# Lines such as "layout: post" or an author's name recur in most posts of a
# blog, so what the fast path made of each line is kept (a list as a tuple, to
# be copied). The memo starts over when full, which bounds its size.
_LINES: dict[str, tuple[str, Any]] = {}
_LINES_LIMIT = 4096

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_DOUBLE = re.compile(r'"([^"\\]*)"')
_SINGLE = re.compile(r"'([^']*)'")
# Plain scalars the fast path accepts: no indicator first, no comment, no ": ".
_PLAIN = re.compile(r"[^\s\-?:,\[\]{}#&*!|>'\"%@`][^#\"\[\]{}]*")
_FLOW_ITEM_PLAIN = re.compile(r"[^\s\-?:,\[\]{}#&*!|>'\"%@`][^#,:\"'\[\]{}]*")
# The everyday list, ["AI", "最新ニュース"]: one match instead of one per item. No
# comma inside the quotes, so the items are those that splitting at commas gives.
_QUOTED_LIST = re.compile(r'\[ *"[^"\\,]*" *(?:, *"[^"\\,]*" *)*\]')
_QUOTED_ITEM = re.compile(r'"([^"\\,]*)"')


def split_matter(data: bytes) -> tuple[bytes, int, int]:
    """Return (front matter bytes, the line it starts on, the body's byte offset)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first = _FENCE.match(data)
    if not first or first.group(1) != b"---":
        raise MatterError("missing: a post starts with a line '---'", 1, 1)
    # The first fence ends before a newline or at the end, so a closing fence
    # is a line of its own after that newline.
    closing = _CLOSING.search(data, first.end())
    if not closing:
        raise MatterError("no closing '---' line", 1, 1)
    return data[first.end() + 1 : closing.start() + 1], 2, closing.end() + 1


def _plain(text: str) -> Any:
    # No implicit type starts with this character; or the text holds a space,
    # which of YAML 1.1's implicit types only a timestamp may (read as text here).
    if text[0] not in _IMPLICIT or " " in text:
        return text
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag in (_STR, _TIMESTAMP):
        return text  # both constructors give back the text itself
    if tag not in _TYPED:
        raise LookupError(text)
    # The constructor itself, not construct_object, which would keep every node.
    constructor = _CONSTRUCTOR.yaml_constructors[tag]
    return constructor(_CONSTRUCTOR, yaml.ScalarNode(tag, text))


def _scalar(text: str, item: bool) -> Any:
    """The value of one scalar, or raise LookupError when the fast path is not sure."""
    first = text[0]
    if first == '"':
        match = _DOUBLE.fullmatch(text)
    elif first == "'":
        match = _SINGLE.fullmatch(text)
    else:
        pattern = _FLOW_ITEM_PLAIN if item else _PLAIN
        if not pattern.fullmatch(text) or ": " in text or text.endswith(":"):
            raise LookupError(text)
        return _plain(text)
    if not match:
        raise LookupError(text)
    return match.group(1)


def _flow_list(value: str) -> list[Any]:
    """The items of a one-line ``[a, "b"]``; LookupError means "ask PyYAML"."""
    if _QUOTED_LIST.fullmatch(value):
        return _QUOTED_ITEM.findall(value)
    if not value.endswith("]"):
        raise LookupError(value)
    inner = value[1:-1].strip()
    items = [part.strip() for part in inner.split(",")] if inner else []
    if not all(items):
        raise LookupError(value)
    return [_scalar(item, True) for item in items]


def _read_line(line: str) -> tuple[str, Any]:
    """One ``key: value`` line as (key, value), lists as tuples; LookupError means "ask PyYAML"."""
    # "key: value": the key is the text before the first ": ", so a valid key
    # (which holds no ":") means the line's first colon is followed by a space.
    key, colon, value = line.partition(": ")
    value = value.strip(" ")
    if not colon or not value:
        raise LookupError(line)
    if key not in _PLAIN_KEYS:
        if not _KEY.fullmatch(key):
            raise LookupError(line)
        resolved = _RESOLVER.resolve(yaml.ScalarNode, key, (True, False))  # type: ignore[no-untyped-call]
        if resolved != _STR:
            raise LookupError(key)  # keys such as "yes" or "null" are not strings in YAML 1.1
        if len(_PLAIN_KEYS) < _KEYS_LIMIT:
            _PLAIN_KEYS.add(key)
    if value[0] == "[":
        return key, tuple(_flow_list(value))
    return key, _scalar(value, False)


def _fast_load(text: str) -> dict[str, Any]:
    """Read flat ``key: value`` front matter; LookupError means "ask PyYAML"."""
    result: dict[str, Any] = {}
    for line in text.split("\n"):
        known = _LINES.get(line)
        if known is None:
            # Python and YAML agree on printable characters; on tabs, controls, the
            # other YAML line breaks (NEL, LS, PS), a BOM or spaces such as U+3000
            # (which str.strip and regex \s take for whitespace) they may not.
            if not line.isprintable():
                raise LookupError(line)
            if not line or line[0] == "#":
                continue
            known = _read_line(line)
            if len(_LINES) >= _LINES_LIMIT:
                _LINES.clear()
            _LINES[line] = known
        key, value = known
        if key in result:
            raise LookupError(line)
        result[key] = list(value) if isinstance(value, tuple) else value
    return result


def _count_nodes(value: Any, budget: int) -> int:
    """Count nodes until ``budget`` runs out; aliases count every time they are reached."""
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            return budget
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return budget


def load_matter(text: str, first_line: int, *, fast: bool = True) -> Any:
    """Load front matter text that starts on ``first_line`` of its file.

    Raises MatterError with the file's line and column for invalid YAML and for
    front matter that expands past a sane size (a YAML alias bomb).
    """
    if not text.strip():
        return {}
    if fast:
        try:
            return _fast_load(text)
        except LookupError:
            pass
    try:
        value = _YAML.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + first_line if mark else first_line
        col = mark.column + 1 if mark else 1
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise MatterError(f"invalid YAML: {problem}", line, col) from None
    # Only aliases ("*name") can make a small text expand into a huge value.
    if "*" in text and _count_nodes(value, _MAX_NODES) < 0:
        raise MatterError("too many values (YAML aliases?)", first_line, 1)
    return value

"""Whether a digest's templates only print a reader's values, so that they can be filled in.

:class:`~publisher.digest.render.DigestRenderer` renders each distinct digest once
with markers where a reader's name, address and links go (``subscriber.name``,
``subscriber.email``, ``links.unsubscribe``, ``links.preferences``: the *slots*),
and then puts each reader's values in place of the markers. That gives exactly
what rendering for the reader would give only if the templates never look
inside those values. :func:`analyse` decides that once per renderer from the
templates' syntax trees. A slot may only be

* printed as it is: ``{{ subscriber.name }}``, also as a branch of
  ``{{ a if test else b }}``;
* a keyword argument of ``.format()`` on a string constant or on
  ``labels.<word>``, printed as it is, when the string's fields for that
  keyword have no conversion and no format spec:
  ``{{ labels.greeting_named.format(name=subscriber.name) }}``;
* tested for being empty: ``{% if subscriber.name %}``, also under ``not``,
  ``and`` and ``or`` (the renderer renders empty and non-empty values apart).

Anything else counts against the fill-in: a filter (``|upper``), a method
(``.endswith()``), an alias (``{% set s = subscriber %}``), a macro argument;
printing a slot (or a block, an include or ``super()``) inside a macro,
``{% call %}``, ``{% filter %}`` or ``{% set %}`` block or a recursive loop,
whose output may be changed before it is shown; ``self``; ``subscriber`` or
``links`` as a whole; rebinding ``subscriber``, ``links``, ``labels`` or
``subject``; printing a slot in a template escaped otherwise than the part it
ends up in, or anywhere when some template has an ``{% autoescape %}`` block;
a template name only known when rendering. When the subject prints a slot, the
``subject`` variable of the HTML and text templates is a slot too.
``links.site`` and ``links.web`` are the same for everyone.

The analysis is pure: it renders nothing and reads nothing but through the
given environment's loader, so a site's own templates are what it reads.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

import jinja2
from jinja2 import meta, nodes

__all__ = ["SLOT_NAMES", "SlotUse", "analyse"]

SLOT_NAMES = ("name", "email", "unsubscribe", "preferences")
_SLOTS = {
    ("subscriber", "name"): "name",
    ("subscriber", "email"): "email",
    ("links", "unsubscribe"): "unsubscribe",
    ("links", "preferences"): "preferences",
}
_SHARED = frozenset({("links", "site"), ("links", "web")})
_READER = frozenset({"subscriber", "links"})
# Names a template must not rebind: the fill-in relies on what they hold.
_KEPT = frozenset({"subscriber", "links", "labels", "subject"})
# Their bodies' output is a value the template may change before it is shown.
_CAPTURING = (nodes.Macro, nodes.CallBlock, nodes.AssignBlock, nodes.FilterBlock)


@dataclass(frozen=True, slots=True)
class SlotUse:
    """What :func:`analyse` found."""

    fillable: bool  # every use of a slot is one the fill-in reproduces exactly
    reason: str = ""  # when not: the first use that is not, with template and line
    in_subject: bool = False  # the subject prints a slot


class _Refused(Exception):
    """A use of a slot that the fill-in might not reproduce."""


def analyse(
    env: jinja2.Environment,
    subject: str,
    templates: Mapping[str, bool],
    labels: Mapping[str, str],
) -> SlotUse:
    """Whether every digest the templates make can be filled in.

    ``subject`` is the subject template's source, rendered without escaping;
    ``templates`` maps each template the renderer renders to whether it fills
    that one with HTML-escaped values; ``labels`` are the words the templates
    see as ``labels``. Templates they extend, include or import are read too.
    """
    try:
        if env.finalize is not None:
            raise _Refused("the environment has a finalize function")
        first = _Checker(env, labels, subject_is_slot=False)
        first.root("digest.subject", subject, escaped=False)
        second = _Checker(env, labels, subject_is_slot=first.prints)
        for name, escaped in templates.items():
            second.root(name, None, escaped=escaped)
        if (first.modifier or second.modifier) and (first.prints or second.prints):
            raise _Refused(
                "an {% autoescape %} block changes how values are escaped, and a slot is printed"
            )
    except _Refused as exc:
        return SlotUse(False, str(exc))
    return SlotUse(True, "", first.prints)


def _member(node: nodes.Node) -> tuple[str, str] | None:
    """``("subscriber", "name")`` for ``subscriber.name`` or ``subscriber["name"]``."""
    if isinstance(node, nodes.Getattr):
        obj, attr = node.node, node.attr
    elif (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        obj, attr = node.node, node.arg.value
    else:
        return None
    if isinstance(obj, nodes.Name) and obj.ctx == "load":
        return obj.name, attr
    return None


def _is_super_call(node: nodes.Node) -> bool:
    return (
        isinstance(node, nodes.Call)
        and isinstance(node.node, nodes.Name)
        and node.node.name == "super"
        and not (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
    )


class _Checker:
    """Walks templates; raises :class:`_Refused` at the first use it cannot vouch for."""

    def __init__(
        self, env: jinja2.Environment, labels: Mapping[str, str], *, subject_is_slot: bool
    ) -> None:
        self.env = env
        self.labels = labels
        self.subject_is_slot = subject_is_slot
        self.prints = False  # some template prints a slot
        self.modifier = False  # some template has an {% autoescape %} block
        self._where = ""
        self._printed = False  # the current template prints a slot

    # --- templates -------------------------------------------------------------------------

    def root(self, name: str, source: str | None, *, escaped: bool) -> None:
        """Check template ``name`` (or ``source``, which has no file) and all it refers to."""
        seen = {name}
        queue = [(name, self._parse(name, source))]
        while queue:
            current, tree = queue.pop()
            self._where, self._printed = current, False
            for child in tree.body:
                self.visit(child, captured=False)
            # A template escapes by its own name, whoever includes it; the
            # subject, which has no name, is never escaped.
            named = source is None or current != name
            if self._printed and named and self._autoescape(current) != escaped:
                raise _Refused(
                    f"{current} prints a slot but is {'not ' if escaped else ''}HTML-escaped"
                )
            self.prints = self.prints or self._printed
            for ref in meta.find_referenced_templates(tree):
                if ref is None:
                    raise _Refused(f"{current} refers to a template named only when rendering")
                if ref not in seen:
                    seen.add(ref)
                    queue.append((ref, self._parse(ref, None)))

    def _parse(self, name: str, source: str | None) -> nodes.Template:
        try:
            if source is None:
                if self.env.loader is None:
                    raise _Refused(f"{name}: the environment has no loader")
                source, filename, _uptodate = self.env.loader.get_source(self.env, name)
                return self.env.parse(source, name, filename)
            return self.env.parse(source)
        except jinja2.TemplateError as exc:
            raise _Refused(f"{name}: {exc}") from None

    def _autoescape(self, name: str) -> bool:
        setting = self.env.autoescape
        return bool(setting(name) if callable(setting) else setting)

    def _refuse(self, node: nodes.Node, what: str) -> _Refused:
        return _Refused(f"{self._where}, line {node.lineno}: {what}")

    # --- nodes -----------------------------------------------------------------------------

    def _slot(self, node: nodes.Node) -> str | None:
        """The slot ``node`` reads, if it reads one."""
        if isinstance(node, nodes.Name):
            if self.subject_is_slot and node.name == "subject" and node.ctx == "load":
                return "subject"
            return None
        member = _member(node)
        return _SLOTS.get(member) if member is not None else None

    def visit(self, node: nodes.Node, *, captured: bool) -> None:
        """Any node: a slot found here, in no allowed position, refuses."""
        if isinstance(node, nodes.Output):
            for item in node.nodes:
                self.printed(item, captured=captured)
        elif isinstance(node, nodes.If):
            self.test(node.test, captured=captured)
            for child in (*node.body, *node.elif_, *node.else_):
                self.visit(child, captured=captured)
        elif isinstance(node, nodes.CondExpr):
            self.test(node.test, captured=captured)
            self.visit(node.expr1, captured=captured)
            if node.expr2 is not None:
                self.visit(node.expr2, captured=captured)
        elif isinstance(node, nodes.For):
            self.visit(node.target, captured=captured)
            self.visit(node.iter, captured=captured)
            if node.test is not None:
                self.test(node.test, captured=captured)
            # loop() in a recursive loop returns the body's output as a value.
            for child in (*node.body, *node.else_):
                self.visit(child, captured=captured or node.recursive)
        elif isinstance(node, _CAPTURING):
            if isinstance(node, nodes.Macro) and node.name in _KEPT:
                raise self._refuse(node, f"a macro is named {node.name}")
            for child in node.iter_child_nodes():
                self.visit(child, captured=True)
        elif isinstance(node, (nodes.Block, nodes.Include)) and captured:
            # Whatever fills the block or the included template would be captured too.
            raise self._refuse(node, "a block or include inside a macro, call, filter or set")
        elif self._slot(node) is not None:
            raise self._refuse(node, f"{self._describe(node)} is used other than printed as it is")
        elif isinstance(node, nodes.Name):
            self.name(node)
        else:
            self.check_binding(node)
            if isinstance(node, nodes.EvalContextModifier):
                self.modifier = True
            member = _member(node)
            if member is not None and member in _SHARED:
                return
            for child in node.iter_child_nodes():
                self.visit(child, captured=captured)

    def printed(self, item: nodes.Node, *, captured: bool) -> None:
        """An item of ``{{ ... }}``."""
        if self._slot(item) is not None or _is_super_call(item):
            if captured:
                raise self._refuse(item, "a slot is printed where the output may be changed")
            self._printed = self._printed or self._slot(item) is not None
        elif isinstance(item, nodes.CondExpr):
            self.test(item.test, captured=captured)
            self.printed(item.expr1, captured=captured)
            if item.expr2 is not None:
                self.printed(item.expr2, captured=captured)
        elif not self.format_call(item, captured=captured):
            self.visit(item, captured=captured)

    def test(self, expr: nodes.Node, *, captured: bool) -> None:
        """A condition: only whether a slot is empty counts, and that is known."""
        if self._slot(expr) is not None:
            return
        if isinstance(expr, nodes.Not):
            self.test(expr.node, captured=captured)
        elif isinstance(expr, (nodes.And, nodes.Or)):
            self.test(expr.left, captured=captured)
            self.test(expr.right, captured=captured)
        else:
            self.visit(expr, captured=captured)

    def format_call(self, item: nodes.Node, *, captured: bool) -> bool:
        """``"...".format(key=slot)`` printed as it is; False if ``item`` passes no slot."""
        if not (
            isinstance(item, nodes.Call)
            and isinstance(item.node, nodes.Getattr)
            and item.node.attr == "format"
        ):
            return False
        keys = {kw.key for kw in item.kwargs if self._slot(kw.value) is not None}
        if not keys:
            return False
        if captured:
            raise self._refuse(item, "a slot is printed where the output may be changed")
        text = self._format_string(item.node.node)
        try:
            fields = [
                (field, spec, conversion)
                for _literal, field, spec, conversion in string.Formatter().parse(text)
                if field is not None
            ]
        except ValueError:
            raise self._refuse(item, f"{text!r} is not a format string") from None
        for field, spec, conversion in fields:
            if spec and "{" in spec:
                raise self._refuse(item, f"{text!r} has a field inside a format spec")
            for key in keys:
                if field == key and (spec or conversion):
                    raise self._refuse(item, f"{text!r} formats {{{key}}} with a spec")
                if field.startswith(key) and field[len(key) : len(key) + 1] in (".", "["):
                    raise self._refuse(item, f"{text!r} looks inside {{{key}}}")
        self._printed = True
        self.visit(item.node.node, captured=captured)
        for arg in item.args:
            self.visit(arg, captured=captured)
        for kw in item.kwargs:
            if kw.key not in keys:
                self.visit(kw.value, captured=captured)
        for extra in (item.dyn_args, item.dyn_kwargs):
            if extra is not None:
                self.visit(extra, captured=captured)
        return True

    def _format_string(self, receiver: nodes.Node) -> str:
        if isinstance(receiver, nodes.Const) and isinstance(receiver.value, str):
            return receiver.value
        member = _member(receiver)
        if member is not None and member[0] == "labels":
            word = member[1]
            value = self.labels.get(word)
            # labels.items would be the dict's method, not a word.
            if isinstance(value, str) and not hasattr(dict, word):
                return value
            raise self._refuse(receiver, f"labels.{word} is not a known label")
        raise self._refuse(receiver, "a slot is passed to .format() on an unknown string")

    def name(self, node: nodes.Name) -> None:
        if node.ctx != "load":
            if node.name in _KEPT:
                raise self._refuse(node, f"the template assigns {node.name}")
        elif node.name in _READER:
            raise self._refuse(node, f"{node.name} is used as a whole")
        elif node.name in ("self", "super"):
            raise self._refuse(node, f"{node.name} gives a block's output as a value")

    def check_binding(self, node: nodes.Node) -> None:
        """Refuse bindings of the kept names that are not Name nodes."""
        bound: list[str] = []
        if isinstance(node, nodes.Import):
            bound.append(node.target)
        elif isinstance(node, nodes.FromImport):
            bound.extend(n[1] if isinstance(n, tuple) else n for n in node.names)
        elif isinstance(node, nodes.NSRef):
            bound.append(node.name)
        for name in bound:
            if name in _KEPT:
                raise self._refuse(node, f"the template assigns {name}")

    def _describe(self, node: nodes.Node) -> str:
        member = _member(node)
        return "subject" if member is None else ".".join(member)

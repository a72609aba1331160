"""The layers of ARCHITECTURE.md, held against the code: an import that breaks them fails here.

Read from the source with ``ast`` (imports inside functions count: a late import
is still a dependency), so nothing of the package is run to check it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "publisher"

# Lowest first. A module may import its own package and any package of a lower
# layer; never a higher layer, nor another package of its own layer.
LAYERS: list[set[str]] = [
    {"errors"},  # the shared vocabulary: one exception tree...
    {"config"},  # ...and the typed settings
    {"site"},  # posts/ -> Post
    {"feeds"},  # pure: posts -> feed documents
    {"build"},  # the pipeline, its cache and output
    {"mail", "websub"},  # headers, names, tokens, sending backends; WebSub pings
    {"store"},  # subscribers, ledger, runs
    {"digest"},  # selection, rendering, the message, the send loop
    {"schedule", "web"},  # publisher run; publisher serve
    {"cli"},  # the command line
    {"__main__"},  # python -m publisher
]
LAYER = {name: number for number, names in enumerate(LAYERS) for name in names}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module imported, line, at module level) for each import of publisher in ``path``."""
    tree = ast.parse(path.read_text("utf-8"))
    top = {id(node) for node in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks at module level are module level too
        if isinstance(node, ast.If):
            top.update(id(child) for child in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name == "publisher" or name.startswith("publisher."):
                found.append((name, node.lineno, id(node) in top))
    return found


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module ``name`` refers to (``from publisher.x import y`` may name an attribute)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def part(module: str) -> str:
    """The capability a module belongs to: its first name under publisher."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = {part(m) for m in modules()} - set(LAYER) - {""}
    assert unplaced == set(), "add these to LAYERS and to ARCHITECTURE.md"


def test_dependencies_point_down() -> None:
    known = modules()
    wrong = []
    for module, path in known.items():
        here = part(module)
        for name, line, _top in imports(path):
            target = resolve(name, known)
            if target is None or target == "publisher":
                continue  # the package itself: __version__
            there = part(target)
            if there == here:
                continue
            if LAYER.get(there, -1) >= LAYER.get(here, -1):
                wrong.append(f"{path.relative_to(REPO)}:{line}: {module} imports {target}")
    assert wrong == []


def test_no_import_cycles_between_modules() -> None:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for name, _line, top in imports(path):
            target = resolve(name, known)
            # A package importing its own modules (to re-export them) is its face, not a cycle.
            if top and target and target != module and not target.startswith(module + "."):
                graph[module].add(target)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def loaded_by(module: str) -> set[str]:
    """The publisher modules that importing ``module`` loads, in a fresh interpreter."""
    code = f"import sys, {module}; print(*(m for m in sys.modules if m.startswith('publisher')))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_the_pure_layers_load_nothing_above_them() -> None:
    for module, allowed in (
        ("publisher.feeds", {"errors", "config", "site", "feeds"}),
        ("publisher.site.posts", {"errors", "config", "site"}),
        ("publisher.config", {"errors", "config"}),
    ):
        above = {m for m in loaded_by(module) if part(m) not in allowed | {""}}
        assert above == set(), f"import {module} loads {sorted(above)}"


def test_architecture_md_names_every_package_and_only_modules_that_exist() -> None:
    text = (REPO / "ARCHITECTURE.md").read_text("utf-8")
    packages = {part(m) for m in modules()} - {"", "__main__"}
    missing = {p for p in packages if f"`{p}/`" not in text and f"`{p}.py`" not in text}
    assert missing == set(), "ARCHITECTURE.md's layer table must name every package"
    named = set(re.findall(r"`([a-z_]+/[a-z_*]+\.py)`", text))
    gone = {n for n in named if not list(PACKAGE.glob(n)) and not list(REPO.glob(n))}
    assert gone == set(), "ARCHITECTURE.md names modules that do not exist"

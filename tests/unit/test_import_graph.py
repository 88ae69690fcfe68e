"""The import graph of kaquan's own packages, read with :mod:`ast` (nothing is imported).

Every ``import`` counts, including those inside functions (a deferred import that dodges a cycle is still
a cycle); only imports under ``if TYPE_CHECKING:`` are left out, as they never run. The rules:

- no cycle between modules;
- no cycle between packages (``core.<domain>``, ``tenants`` …) but through the imports listed in
  :data:`KNOWN_BACK_EDGES`;
- ``plugins`` (the partner SDK) imports nothing from ``core``, ``tenants``, ``admin_ui`` or ``h5``;
- ``core.db`` and ``core.audit`` (the floor) import only the kernel modules in :data:`KERNEL`;
- a broad ``except`` (``Exception``, ``BaseException``, bare) sits at a boundary and says so in a
  ``# boundary: <why>`` comment on its line or the line above.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tenants", "plugins", "admin_ui", "h5")

#: What ``core.db`` and ``core.audit`` may import (a name covers its submodules).
KERNEL = (
    "core.db",
    "core.audit",
    "core.crypto",
    "core.settings",
    "core.logging",
    "core.errors",
    "core.normalize",
    "core.domains",  # the list of domains: imports only the standard library
)
#: Packages the partner SDK must not import (an outside partner cannot).
SDK_FORBIDDEN = ("core", "tenants", "admin_ui", "h5")

#: The imports that still close a cycle between packages, each with why it is there. With them left out,
#: the package graph has no cycle. Break one, then delete its entry (the test fails on an entry whose
#: import is gone, so the list only shrinks).
KNOWN_BACK_EDGES: dict[tuple[str, str], str] = {
    ("core.http.openapi", "tenants.guards"): "the OpenAPI document names each route's scopes",
    ("core.http.openapi", "tenants.scopes"): "the OpenAPI document lists the scopes",
    ("tenants.users", "core.jobs.outbox"): "an invited user's e-mail goes out through the outbox",
}

_BROAD_EXCEPT = re.compile(r"^\s*except\s*(:|\(?[\w., ]*\b(Exception|BaseException)\b)")
_SUPPRESS_BROAD = re.compile(r"suppress\([^)]*\b(Exception|BaseException)\b")


@cache
def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, except in ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _import_nodes_of(other)
            continue
        yield from _import_nodes_of(child)


def _import_nodes_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _import_nodes(node)


def _own(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) lives in, if any."""
    modules = _modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (target := _own(alias.name)) is not None:
                yield target
        return
    if node.level:
        base = module.split(".")
        if _modules()[module].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        target = submodule if submodule in _modules() else _own(source)
        if target is not None:
            yield target


@cache
def _graph() -> dict[str, dict[str, int]]:
    """module → {module it imports: line of the first such import}."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in _modules().items():
        edges: dict[str, int] = {}
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _targets(module, node):
                if target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle through the component's first node (shortest, by breadth-first search)."""
    start, members = component[0], set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & members):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if succ not in came_from:
                    came_from[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")


def _package(module: str) -> str:
    """The package a module belongs to for the package rule: ``core.<domain>``, a top-level ``core``
    module on its own, or the top-level package."""
    parts = module.split(".")
    if parts[0] == "core" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def _package_graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], str]]:
    """package → packages it imports, leaving out :data:`KNOWN_BACK_EDGES`; and one import per edge."""
    graph: dict[str, set[str]] = {}
    example: dict[tuple[str, str], str] = {}
    for module, edges in _graph().items():
        for target, line in edges.items():
            a, b = _package(module), _package(target)
            graph.setdefault(a, set())
            graph.setdefault(b, set())
            if a != b and (module, target) not in KNOWN_BACK_EDGES:
                graph[a].add(b)
                example.setdefault((a, b), f"{module}:{line} imports {target}")
    return graph, example


def _under(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = _graph()
    assert "core.risk.engine" in graph["core.risk.gate"]  # `from core.risk import engine`
    assert "plugins" in graph["plugins.builtin.log_notifier"]  # a name from a package's __init__
    assert "core.db.base" in graph["core.db.session"]
    assert len(graph) > 150


def test_no_cycle_between_modules() -> None:
    graph = _graph()
    plain = {m: set(edges) for m, edges in graph.items()}
    cycles = []
    for component in _components(plain):
        cycle = _cycle_in(component, plain)
        steps = [f"{a}:{graph[a][b]}" for a, b in pairwise(cycle)]
        cycles.append(" -> ".join([*steps, cycle[-1]]) + f"   (component: {', '.join(component)})")
    assert not cycles, "import cycles between modules (module:line of the import):\n" + "\n".join(cycles)


def test_no_new_cycle_between_packages() -> None:
    graph, example = _package_graph()
    cycles = []
    for component in _components(graph):
        cycle = _cycle_in(component, graph)
        steps = "\n    ".join(example[(a, b)] for a, b in pairwise(cycle))
        cycles.append(f"  {' -> '.join(cycle)}:\n    {steps}")
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)
    gone = [f"{a} -> {b}" for a, b in KNOWN_BACK_EDGES if b not in _graph()[a]]
    assert not gone, f"these imports are gone, delete them from KNOWN_BACK_EDGES: {gone}"


def test_the_partner_sdk_imports_nothing_of_the_host() -> None:
    bad = [
        f"{module}:{line} imports {target}"
        for module, edges in _graph().items()
        if _under(module, ("plugins",))
        for target, line in edges.items()
        if _under(target, SDK_FORBIDDEN)
    ]
    assert not bad, "the partner SDK (plugins) must import only itself:\n" + "\n".join(bad)


def test_the_floor_imports_only_the_kernel() -> None:
    bad = [
        f"{module}:{line} imports {target}"
        for module, edges in _graph().items()
        if _under(module, ("core.db", "core.audit"))
        for target, line in edges.items()
        if not _under(target, KERNEL)
    ]
    assert not bad, "core.db and core.audit may import only the kernel:\n" + "\n".join(bad)


def test_every_broad_except_is_a_declared_boundary() -> None:
    undeclared = []
    for path in _modules().values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if not (_BROAD_EXCEPT.match(line) or _SUPPRESS_BROAD.search(line)):
                continue
            above = lines[number - 2] if number > 1 else ""
            if "# boundary:" not in line and not above.strip().startswith("# boundary:"):
                undeclared.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not undeclared, (
        "narrow these to the exceptions that can happen, or mark a real boundary (worker, middleware, "
        "plugin call, scheduler tick) with `# boundary: <why>`:\n" + "\n".join(undeclared)
    )

"""The package's import graph has no circles.

The graph is built from the source (every ``import`` and ``from ... import`` of every module, those inside
functions included: a lazy import that dodges a circle is still one), then its strongly connected components are
found; each one with more than one module is a circle. Importing ``a.b.c`` counts as an arrow to ``a.b.c`` only
(a package's ``__init__`` importing its own submodules is the usual layout, not a circle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import keyreid_stream

PACKAGE = Path(keyreid_stream.__file__).parent
ROOT = PACKAGE.name


def _modules() -> dict[str, tuple[Path, bool]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _imported(node: ast.AST, base: str, modules: dict[str, tuple[Path, bool]]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
            module = f"{anchor}.{node.module}" if node.module else anchor
        else:
            module = node.module or ""
        for alias in node.names:
            yield f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its source)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        base = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _imported(node, base, modules):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert f"{ROOT}.contracts" in graph[f"{ROOT}.wire"]
    assert any(graph[name] for name in graph if name.startswith(f"{ROOT}.cli"))


def test_no_import_circles() -> None:
    found = circles(import_graph())
    matcher = [c for c in found if all(m.startswith(f"{ROOT}.matcher.") for m in c)]
    others = [c for c in found if c not in matcher]
    assert not found, (f"import circles outside the matcher: {others}; inside the matcher: {matcher}")


def private_imports() -> list[str]:
    """``from keyreid_stream.x import _name`` anywhere in the package: a private helper used across modules."""
    found = []
    for name, (path, _) in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(ROOT):
                found += [f"{name}:{node.lineno} imports {node.module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_private_helpers_are_imported_across_modules() -> None:
    # The matcher's own (topology's helpers) are left to its restructuring; everything else is checked.
    outside = [line for line in private_imports() if not line.startswith(f"{ROOT}.matcher.")]
    assert not outside, outside
